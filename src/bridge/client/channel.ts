import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import {
  type CallEnd,
  ClientFrameSchema,
  type Hello,
  type ServerFrame,
  ServerFrameSchema,
} from "../../gen/bridge_pb.js";
import { Liveness } from "./liveness.js";

/** The subset of the browser WebSocket API the channel uses (the `ws` package has it too). */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  readonly bufferedAmount: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  /** `ws` passes an ErrorEvent with a message (e.g. "Unexpected server response: 404"); browsers say nothing. */
  onerror: ((ev: unknown) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}

/**
 * A WebSocket constructor: the browser's or Node 22's global, or the `ws` package's. Typed loosely
 * (any object) because each implementation types its event handlers with its own event classes;
 * the channel uses only what WebSocketLike lists, which all of them have.
 */
export type WebSocketFactory = new (url: string, protocols?: string | string[]) => object;

export type ChannelState = "connecting" | "open" | "reconnecting" | "closed";

export type CallBody = MessageInitShape<typeof ClientFrameSchema>["body"];

export interface CallHandlers {
  /** Every frame of the call but its CallEnd. */
  onFrame(body: ServerFrame["body"]): void;
  /** Exactly once: the CallEnd from the server, or a synthetic one when the call is lost. */
  onEnd(end: Pick<CallEnd, "code" | "message" | "metadata">): void;
  /**
   * Whether to send the call again on the next connection if this one drops before
   * its CallEnd. Only for idempotent calls (sequenced COLLECT, CANCEL).
   */
  resend: boolean;
  /**
   * A COMMIT: if the connection drops before its CallEnd, the next connection resumes the reply
   * (ptt-resume-from: the reply frames received so far, docs/protocol.md §9), so `onFrame`
   * sees each frame once and the workflow never runs twice.
   */
  resumable?: boolean;
}

export interface CallHandle {
  /** Sends CancelCall; the call still ends with its CallEnd. */
  cancel(): void;
}

export interface ChannelOptions {
  /** Browser: globalThis.WebSocket. Node: the `ws` package's WebSocket. */
  WebSocket?: WebSocketFactory;
  /** Sent as a `bearer.<token>` subprotocol: browsers cannot set an Authorization header. */
  token?: string;
  /** First reconnect delay; doubles up to maxBackoffMs, with jitter. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  onState?: (state: ChannelState) => void;
  /**
   * How long a call may wait for a connection (socket open and the server's Hello) before it
   * ends `unavailable` with what went wrong: a server that is down, a wrong URL, a handshake
   * that never completes. Calls resent after a reconnect wait as long again. Default 10000;
   * `Infinity` waits for ever. The channel itself keeps reconnecting for later calls.
   */
  connectTimeoutMs?: number;
  /**
   * While a call runs (a reply streams, an ack is awaited) and no frame arrived for this long,
   * the channel asks the server for one (a Ping; docs/protocol.md §6). A browser cannot see a
   * connection that died silently (a laptop lid, a phone leaving Wi-Fi: no close event ever
   * comes), so this is how it finds out. Default 10000; `Infinity` never probes. An idle
   * connection is not probed; the next call probes it at once.
   */
  livenessMs?: number;
  /**
   * How long after a Ping some frame must arrive (any frame: the Pong, a reply frame, an ack).
   * Past it the socket is taken for dead and closed, and the channel reconnects: chunks are sent
   * again and a reply resumes where it was, as after any drop. The wait starts again while the
   * client's own frames are still leaving (a large chunk on a slow uplink). Default 5000.
   */
  livenessTimeoutMs?: number;
}

interface Pending {
  body: CallBody;
  handlers: CallHandlers;
  /** The call's request headers (ClientFrame.metadata). */
  metadata: { [name: string]: string };
  /** Reply frames received (text, audio, action), counted across resumes. */
  frames: number;
  /** The end_message or error_message frame arrived: a resume's copy is not passed on. */
  sawEnd: boolean;
  /** Sent again with ptt-resume-from after a drop. */
  resuming: boolean;
  /** The call id on the current socket; 0 while waiting to be (re)sent. */
  id: number;
  /** While waiting for a connection: ends the call when the connect timeout passes. */
  timer?: ReturnType<typeof setTimeout> | undefined;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_LIVENESS_MS = 10_000;
const DEFAULT_LIVENESS_TIMEOUT_MS = 5_000;

const CONNECTING = 0;
const OPEN = 1;

/**
 * One reconnecting bridge WebSocket carrying many calls (docs/protocol.md §6). Calls that
 * may be repeated safely are sent again after a reconnect; the others end with
 * `unavailable`, so nothing is silently lost and nothing runs twice.
 */
export class BridgeChannel {
  private ws: WebSocketLike | undefined;
  /** Watches the current socket for silence while calls run. */
  private liveness: Liveness | undefined;
  /** Bytes handed to the current socket, to tell its send buffer draining. */
  private sentBytes = 0;
  private nextId = 1;
  private readonly live = new Map<number, Pending>();
  private queue: Pending[] = [];
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stateValue: ChannelState = "connecting";
  private helloValue: Hello | undefined;
  private helloWaiters: { resolve: () => void; reject: (err: Error) => void }[] = [];
  /** Why the last connection attempt failed, for the error a call waiting too long gets. */
  private lastFailure: string | undefined;

  constructor(
    readonly url: string,
    private readonly options: ChannelOptions = {},
  ) {
    this.open();
  }

  get state(): ChannelState {
    return this.stateValue;
  }

  /** The server's Hello of the current connection (limits in force). */
  get hello(): Hello | undefined {
    return this.helloValue;
  }

  /**
   * Resolves once a connection is open and its Hello arrived; rejects when none is within the
   * connect timeout, or the channel is closed.
   */
  ready(): Promise<void> {
    if (this.stateValue === "open") return Promise.resolve();
    if (this.stateValue === "closed") return Promise.reject(new Error("bridge channel is closed"));
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (err: Error) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      const ms = this.connectTimeoutMs;
      const timer = Number.isFinite(ms)
        ? setTimeout(() => {
            this.helloWaiters = this.helloWaiters.filter((w) => w !== waiter);
            reject(new Error(this.timeoutMessage()));
          }, ms)
        : undefined;
      this.helloWaiters.push(waiter);
    });
  }

  call(
    body: CallBody,
    handlers: CallHandlers,
    metadata: { [name: string]: string } = {},
  ): CallHandle {
    const from = Number(metadata[RESUME_HEADER] ?? 0);
    const pending: Pending = {
      body,
      handlers,
      metadata,
      frames: Number.isSafeInteger(from) ? from : 0,
      sawEnd: false,
      resuming: false,
      id: 0,
    };
    if (this.stateValue === "closed") {
      handlers.onEnd({ code: "unavailable", message: "bridge channel is closed", metadata: {} });
    } else if (this.stateValue === "open") this.send(pending);
    else this.enqueue([pending]);
    return {
      cancel: () => {
        if (pending.id !== 0 && this.live.get(pending.id) === pending) {
          this.sendFrame(pending.id, { case: "cancel", value: {} });
        } else if (this.queue.includes(pending)) {
          clearTimeout(pending.timer);
          this.queue = this.queue.filter((p) => p !== pending);
          handlers.onEnd({
            code: "canceled",
            message: "call cancelled before it was sent",
            metadata: {},
          });
        }
      },
    };
  }

  close(): void {
    this.setState("closed");
    clearTimeout(this.timer);
    this.liveness?.stop();
    this.ws?.close(1000, "client closed");
    this.ws = undefined;
    this.failAll("bridge channel closed", () => true);
    const waiters = this.helloWaiters;
    this.helloWaiters = [];
    for (const w of waiters) w.reject(new Error("bridge channel closed"));
  }

  /**
   * Gives up the current socket as if the network dropped it (tests, a network change the app
   * saw) and reconnects at once, without waiting for a close handshake a dead socket never ends.
   */
  drop(): void {
    if (this.ws) this.abandon(this.ws, 4000, "dropped by client");
  }

  private open(): void {
    this.options.onState?.(this.stateValue);
    const Ctor =
      this.options.WebSocket ?? (globalThis as { WebSocket?: WebSocketFactory }).WebSocket;
    if (!Ctor) {
      throw new Error(
        "no WebSocket implementation: pass options.WebSocket (Node 20: the ws package's WebSocket)",
      );
    }
    const protocols = ["ptt.bridge.v1"];
    if (this.options.token) protocols.push(`bearer.${this.options.token}`);
    const ws = new Ctor(this.url, protocols) as WebSocketLike;
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.sentBytes = 0;
    const liveness = new Liveness(
      {
        running: () => this.live.size > 0,
        departed: () => this.sentBytes - ws.bufferedAmount,
        ping: () => this.sendBytes(PING),
        dead: (why) => this.abandon(ws, 4001, "no answer to a ping", why),
      },
      {
        intervalMs: this.options.livenessMs ?? DEFAULT_LIVENESS_MS,
        timeoutMs: this.options.livenessTimeoutMs ?? DEFAULT_LIVENESS_TIMEOUT_MS,
      },
    );
    this.liveness = liveness;
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      liveness.heard();
      this.receive(ev.data);
    };
    // Why this attempt failed, for the error of calls that time out waiting: ws says why in
    // its error event ("connect ECONNREFUSED ...", "Unexpected server response: 404"); a
    // browser says nothing, and the close code is all there is.
    let failure: string | undefined;
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.lastFailure = failure ?? `closed with ${ev.code}${ev.reason ? ` (${ev.reason})` : ""}`;
      this.lost();
    };
    ws.onerror = (ev) => {
      // A close event always follows; reconnecting happens there.
      const message = (ev as { message?: unknown } | null)?.message;
      if (typeof message === "string" && message) failure = message;
    };
  }

  private get connectTimeoutMs(): number {
    return this.options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  }

  private timeoutMessage(): string {
    const why = this.lastFailure ?? (this.ws ? "no Hello from the server" : "not connected");
    return `no bridge connection to ${this.url} within ${this.connectTimeoutMs} ms: ${why}`;
  }

  /** Queues calls until a connection is open; each ends `unavailable` past the connect timeout. */
  private enqueue(calls: Pending[], front = false): void {
    const ms = this.connectTimeoutMs;
    for (const p of calls) {
      if (!Number.isFinite(ms)) continue;
      p.timer = setTimeout(() => {
        p.timer = undefined;
        if (!this.queue.includes(p)) return;
        this.queue = this.queue.filter((q) => q !== p);
        p.handlers.onEnd({ code: "unavailable", message: this.timeoutMessage(), metadata: {} });
        // A handshake that hangs (a server that accepts and never answers) is given up, so
        // that the next attempt can succeed.
        if (this.ws && this.ws.readyState === CONNECTING) this.ws.close();
      }, ms);
    }
    this.queue = front ? [...calls, ...this.queue] : [...this.queue, ...calls];
  }

  private receive(data: unknown): void {
    const bytes =
      data instanceof ArrayBuffer ? new Uint8Array(data) : data instanceof Uint8Array ? data : null;
    if (!bytes) return;
    const frame = fromBinary(ServerFrameSchema, bytes);
    const body = frame.body;
    if (body.case === "hello") {
      this.helloValue = body.value;
      this.attempt = 0;
      this.lastFailure = undefined;
      this.setState("open");
      const queued = this.queue;
      this.queue = [];
      for (const p of queued) this.send(p);
      const waiters = this.helloWaiters;
      this.helloWaiters = [];
      for (const w of waiters) w.resolve();
      return;
    }
    const pending = this.live.get(frame.callId);
    if (!pending) return;
    if (body.case === "end") {
      this.live.delete(frame.callId);
      this.ended(pending, body.value);
      return;
    }
    if (body.case === "response") {
      const c = body.value.content.case;
      if (c === "endMessage" || c === "errorMessage") {
        if (pending.sawEnd) return;
        pending.sawEnd = true;
      } else {
        pending.frames++;
      }
    }
    pending.handlers.onFrame(body);
  }

  /** A CallEnd; a resume the server could not serve falls back or says why. */
  private ended(pending: Pending, end: Pick<CallEnd, "code" | "message" | "metadata">): void {
    if (pending.resuming && end.code === "not_found" && pending.frames === 0) {
      // No reply to resume and none received: the COMMIT never reached the server. Sent
      // again as it was: if it did commit meanwhile, the server answers already_exists.
      pending.resuming = false;
      const { [RESUME_HEADER]: _, ...rest } = pending.metadata;
      pending.metadata = rest;
      this.retry(pending);
      return;
    }
    if (pending.resuming && (end.code === "not_found" || end.code === "out_of_range")) {
      pending.handlers.onEnd({
        code: "unavailable",
        message: `bridge connection lost mid-reply and the reply could not be resumed: ${end.message}`,
        metadata: end.metadata,
      });
      return;
    }
    pending.handlers.onEnd(end);
  }

  private retry(pending: Pending): void {
    if (this.stateValue === "open") this.send(pending);
    else this.enqueue([pending], true);
  }

  private send(pending: Pending): void {
    clearTimeout(pending.timer);
    pending.timer = undefined;
    const id = this.nextId;
    // call_id is a uint32 > 0, unique among running calls.
    this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
    const bytes = encode(id, pending.body, pending.metadata);
    const max = Number(this.helloValue?.limits.max_frame_bytes ?? Number.POSITIVE_INFINITY);
    if (bytes.byteLength > max) {
      // The server would close the socket (1009) and a resent call would loop: refuse it here.
      pending.handlers.onEnd({
        code: "resource_exhausted",
        message: `max_frame_bytes: frame of ${bytes.byteLength} bytes exceeds ${max}`,
        metadata: {},
      });
      return;
    }
    pending.id = id;
    this.live.set(id, pending);
    this.ws?.send(bytes);
    this.sentBytes += bytes.byteLength;
    this.liveness?.callStarted();
  }

  private sendFrame(callId: number, body: CallBody): void {
    this.sendBytes(encode(callId, body));
  }

  /** Sends on the open socket; returns the bytes sent (0 when it is not open). */
  private sendBytes(bytes: Uint8Array): number {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN) return 0;
    ws.send(bytes);
    this.sentBytes += bytes.byteLength;
    return bytes.byteLength;
  }

  /**
   * Leaves a socket for dead and reconnects now. Its close handshake would wait for the
   * server's Close frame, which a dead socket never brings (ws gives up after 30 s; Chromium had
   * not after the 20 s test/e2e/resume-chromium.test.ts waited); the close event that comes
   * eventually is ignored, as this.ws is no longer that socket.
   */
  private abandon(ws: WebSocketLike, code: number, reason: string, why = reason): void {
    if (this.ws !== ws) return;
    this.lastFailure = why;
    ws.close(code, reason);
    this.lost();
  }

  /** The socket is gone: re-queue what may be resent, fail the rest, reconnect. */
  private lost(): void {
    this.ws = undefined;
    this.liveness?.stop();
    this.liveness = undefined;
    this.helloValue = undefined;
    if (this.stateValue === "closed") return;
    this.failAll(
      "bridge connection lost before the call ended",
      (p) => !p.handlers.resend && !p.handlers.resumable,
    );
    // Older calls first: chunks keep their order across the reconnect.
    const again = [...this.live.values()];
    for (const p of again) {
      p.id = 0;
      if (p.handlers.resumable) {
        p.resuming = true;
        p.metadata = { ...p.metadata, [RESUME_HEADER]: String(p.frames) };
      }
    }
    this.live.clear();
    this.enqueue(again, true);
    this.setState("reconnecting");
    const min = this.options.minBackoffMs ?? 100;
    const max = this.options.maxBackoffMs ?? 5000;
    const delay = Math.min(max, min * 2 ** this.attempt) * (0.5 + Math.random() / 2);
    this.attempt++;
    this.timer = setTimeout(() => {
      try {
        this.open();
      } catch (err) {
        this.lastFailure = err instanceof Error ? err.message : String(err);
        this.lost();
      }
    }, delay);
  }

  private failAll(message: string, which: (p: Pending) => boolean): void {
    for (const [id, p] of this.live) {
      if (!which(p)) continue;
      this.live.delete(id);
      p.handlers.onEnd({ code: "unavailable", message, metadata: {} });
    }
    const failed = this.queue.filter(which);
    this.queue = this.queue.filter((p) => !which(p));
    for (const p of failed) {
      clearTimeout(p.timer);
      p.handlers.onEnd({ code: "unavailable", message, metadata: {} });
    }
  }

  private setState(state: ChannelState): void {
    if (this.stateValue === state) return;
    this.stateValue = state;
    this.options.onState?.(state);
  }
}

/** ClientFrame { call_id: 0, ping: {} }: a liveness probe, not a call (docs/protocol.md §6). */
const PING = toBinary(
  ClientFrameSchema,
  create(ClientFrameSchema, { body: { case: "ping", value: {} } }),
);

function encode(
  callId: number,
  body: CallBody,
  metadata: { [name: string]: string } = {},
): Uint8Array {
  return toBinary(ClientFrameSchema, create(ClientFrameSchema, { callId, body, metadata }));
}

/** The request header of a resumed COMMIT (docs/protocol.md §9). */
export const RESUME_HEADER = "ptt-resume-from";
