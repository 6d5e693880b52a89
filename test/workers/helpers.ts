import { runInDurableObject, SELF } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { type Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import type { JournalEntry } from "../../src/core/drivers/memory.js";
import type { PttCore } from "../../src/core/ptt-core.js";
import type { SessionRecord } from "../../src/core/session.js";
import { ClientFrameSchema, type ServerFrame, ServerFrameSchema } from "../../src/gen/bridge_pb.js";
import {
  RequestPhase,
  StreamingService,
  type StreamRequest,
  type StreamRequestSchema,
  type StreamResponse,
} from "../../src/gen/streaming_pb.js";
import { deviceFetch } from "../../src/runtimes/cloudflare/device-client.js";
import { DeviceObject } from "../../src/runtimes/cloudflare/device-object.js";

/** The TTLs vitest.workers.config.ts starts the Worker with (1 s and 2 s). */
export const IDLE_TTL_MS = Number(env.PTT_IDLE_TTL_MS);
export const TOMBSTONE_TTL_MS = Number(env.PTT_TOMBSTONE_TTL_MS);
/** How late the store's one timer (the alarm) fires after a deadline (memory-store.ts). */
export const SWEEP_SLACK_MS = 250;

export type Req = Exclude<MessageInitShape<typeof StreamRequestSchema>, StreamRequest>;

let counter = 0;
/** A hardware id (so a Durable Object) no other test uses. */
export function newDevice(prefix: string): string {
  counter++;
  return `${prefix}-${counter}-${crypto.randomUUID().slice(0, 8)}`;
}

export function collect(hardwareId: string, sessionId: string, seq: number, text: string): Req {
  return { hardwareId, sessionId, phase: RequestPhase.COLLECT, chunkSeq: seq, chunkText: text };
}

export function commit(hardwareId: string, sessionId: string): Req {
  return { hardwareId, sessionId, phase: RequestPhase.COMMIT };
}

/** Connect (the protocol of connect-web) into the Worker's fetch handler: the whole public path. */
export const client = createClient(
  StreamingService,
  createConnectTransport({
    baseUrl: "https://ptt.test",
    // workerd refuses redirect: "error" (connect-web's default); nothing here redirects.
    fetch: ((input: RequestInfo | URL, init?: RequestInit) =>
      SELF.fetch(input, { ...init, redirect: "manual" })) as typeof globalThis.fetch,
  }),
);

export interface CallResult {
  frames: StreamResponse["content"][];
  /** undefined = OK */
  code: Code | undefined;
  message: string;
  trailers: Headers;
}

/** Connect straight into a device's object (its fetch), as the Worker forwards a call. */
export function deviceClient(hardwareId: string): typeof client {
  const direct = deviceFetch(env.DEVICE, hardwareId);
  // workerd refuses redirect: "error" (connect-web's default).
  const fetch = ((input: RequestInfo | URL, init?: RequestInit) =>
    direct(input, { ...init, redirect: "manual" })) as typeof globalThis.fetch;
  return createClient(
    StreamingService,
    createConnectTransport({ baseUrl: "https://device", fetch }),
  );
}

/** One StreamAudio call through the Worker (or `via` another client), to its end. */
export async function streamAudio(req: Req, via: typeof client = client): Promise<CallResult> {
  const frames: StreamResponse["content"][] = [];
  let trailers = new Headers();
  let code: Code | undefined;
  let message = "";
  try {
    for await (const res of via.streamAudio(req, { onTrailer: (t) => (trailers = t) })) {
      frames.push(res.content);
    }
  } catch (err) {
    const e = ConnectError.from(err);
    code = e.code;
    message = e.rawMessage;
    if ([...trailers.keys()].length === 0) trailers = e.metadata;
  }
  return { frames, code, message, trailers };
}

export function replyText(frames: readonly StreamResponse["content"][]): string {
  return frames
    .filter((f) => f.case === "textChunk")
    .map((f) => f.value)
    .join("");
}

export function deviceStub(hardwareId: string): DurableObjectStub<DeviceObject> {
  return env.DEVICE.get(env.DEVICE.idFromName(hardwareId)) as DurableObjectStub<DeviceObject>;
}

/** What the object's SQLite storage holds: its session records (keys without "s:") and alarm. */
export async function stored(
  hardwareId: string,
): Promise<{ records: Map<string, SessionRecord>; alarm: number | null }> {
  return runInDurableObject(deviceStub(hardwareId), async (_instance, state) => {
    const records = new Map<string, SessionRecord>();
    for (const [k, e] of state.storage.kv.list<JournalEntry>({ prefix: "s:" })) {
      records.set(k.slice(2), e.record);
    }
    return { records, alarm: await state.storage.getAlarm() };
  });
}

/** The store's key of a session, as journaled (after the "s:" prefix). */
export function recordKey(hardwareId: string, sessionId: string): string {
  return `${hardwareId}\n${sessionId}`;
}

/** Polls `probe` until it returns a value other than undefined (real time: alarms are real). */
export async function eventually<T>(
  probe: () => Promise<T | undefined>,
  what: string,
  timeoutMs = 5000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Evicts one object as the runtime may at any time (ctx.abort()): its instance and
 * memory are gone, its storage and alarm stay; the next event builds a new instance.
 * (workerd logs the abort as an uncaught "broken.outputGateBroken" error: expected.)
 */
export async function evict(hardwareId: string): Promise<void> {
  const aborted = await runInDurableObject(deviceStub(hardwareId), (_instance, state) => {
    state.abort("evicted by the test");
  }).then(
    () => false,
    (err: unknown) => String(err).includes("evicted by the test"),
  );
  if (!aborted) throw new Error(`object of ${hardwareId} was not aborted`);
}

/**
 * Replaces the running object's in-memory state as workerd does when it evicts a
 * hibernated object and wakes it for the next event: a new DeviceObject is built
 * over the same DurableObjectState (its constructor reloads the journal, re-arms
 * the alarm, has no socket connections), and every later event the runtime
 * delivers to the object (fetch, alarm, socket messages and closes) goes to it.
 * The bridge sockets themselves stay open, as they do across hibernation.
 */
export async function swapInFreshInstance(
  hardwareId: string,
  vars: Record<string, string> = {},
): Promise<void> {
  await runInDurableObject(deviceStub(hardwareId), (instance, state) => {
    // `vars` override the Worker's (wrangler.toml + vitest.workers.config.ts) for this object.
    const fresh = new DeviceObject(state, { ...env, ...vars });
    (instance as unknown as { testLive?: DeviceObject }).testLive = fresh;
    instance.fetch = (...args) => fresh.fetch(...args);
    instance.alarm = (...args) => fresh.alarm(...args);
    instance.webSocketMessage = (...args) => fresh.webSocketMessage(...args);
    instance.webSocketClose = (...args) => fresh.webSocketClose(...args);
    instance.webSocketError = (...args) => fresh.webSocketError(...args);
  });
}

/** The core of the instance that serves the object's events now (after any swap). */
export async function liveCore<T>(
  hardwareId: string,
  read: (core: PttCore) => T | Promise<T>,
): Promise<T> {
  return runInDurableObject(deviceStub(hardwareId), (instance) => {
    const live = (instance as unknown as { testLive?: DeviceObject }).testLive ?? instance;
    return read((live as unknown as { core: PttCore }).core);
  });
}

/** A bridge WebSocket through the Worker (the browser's path), with its frames queued. */
export class BridgeSocket {
  private readonly frames: ServerFrame[] = [];
  private waiters: (() => void)[] = [];
  closed: { code: number; reason: string } | undefined;

  private constructor(readonly ws: WebSocket) {
    ws.addEventListener("message", (e) => {
      if (typeof e.data === "string") throw new Error(`text frame from the server: ${e.data}`);
      this.frames.push(fromBinary(ServerFrameSchema, new Uint8Array(e.data)));
      this.wake();
    });
    ws.addEventListener("close", (e) => {
      this.closed = { code: e.code, reason: e.reason };
      this.wake();
    });
  }

  /** `hardwareId` null: the contract's plain /v1/bridge, without the routing parameter. */
  static async open(
    hardwareId: string | null,
    headers: Record<string, string> = {},
  ): Promise<BridgeSocket> {
    const query = hardwareId === null ? "" : `?hardware_id=${encodeURIComponent(hardwareId)}`;
    const res = await SELF.fetch(`https://ptt.test/v1/bridge${query}`, {
      headers: { ...headers, upgrade: "websocket", "sec-websocket-protocol": "ptt.bridge.v1" },
    });
    const ws = res.webSocket;
    if (res.status !== 101 || !ws) throw new Error(`upgrade refused: HTTP ${res.status}`);
    if (res.headers.get("sec-websocket-protocol") !== "ptt.bridge.v1") {
      throw new Error("the server did not pick ptt.bridge.v1");
    }
    // Standard WebSockets deliver binary messages as Blobs by default.
    ws.binaryType = "arraybuffer";
    ws.accept();
    return new BridgeSocket(ws);
  }

  send(frame: MessageInitShape<typeof ClientFrameSchema>): void {
    this.ws.send(toBinary(ClientFrameSchema, create(ClientFrameSchema, frame)));
  }

  streamAudio(callId: number, req: Req): void {
    this.send({ callId, body: { case: "streamAudio", value: req } });
  }

  /** The next frame, in arrival order. */
  async next(timeoutMs = 3000): Promise<ServerFrame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const frame = this.frames.shift();
      if (frame) return frame;
      if (this.closed) throw new Error(`socket closed ${this.closed.code} ${this.closed.reason}`);
      if (Date.now() > deadline) throw new Error("no frame in time");
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  /** Every frame of call `callId` up to and including its CallEnd (one call at a time). */
  async call(callId: number): Promise<{ frames: ServerFrame[]; end: ServerFrame }> {
    const frames: ServerFrame[] = [];
    for (;;) {
      const frame = await this.next();
      if (frame.callId !== callId)
        throw new Error(`frame of call ${frame.callId} while reading ${callId}`);
      frames.push(frame);
      if (frame.body.case === "end") return { frames, end: frame };
    }
  }

  close(): void {
    this.ws.close(1000, "done");
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
