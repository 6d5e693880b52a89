import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { cancelled, invalidArgument, resourceExhausted, unavailable } from "../../core/errors.js";
import { ABORTED, LazyHandlerContext } from "../../core/handler-context.js";
import { LIMIT_NAMES, type Limits } from "../../core/limits.js";
import type { PttCore } from "../../core/ptt-core.js";
import { BINARY_READ_OPTIONS } from "../../core/request-decoding.js";
import { createStreamingHandlers, type StreamingHandlers } from "../../core/streaming-service.js";
import { varintLength } from "../../core/varint.js";
import { type ClientFrame, ClientFrameSchema, ServerFrameSchema } from "../../gen/bridge_pb.js";
import {
  type InterruptRequest,
  StreamingService,
  type StreamRequest,
} from "../../gen/streaming_pb.js";
import { FlowControl, type FlowLimits } from "./flow-control.js";
import { encodeServerFrame } from "./server-frame.js";
import { type BridgeSocket, CLOSE } from "./socket-port.js";

/** Per-socket limits; see FlowControl for how each one holds on every runtime. */
export interface BridgeOptions extends FlowLimits {
  /** Largest ClientFrame accepted; bigger ones close the socket with 1009. */
  maxFrameBytes: number;
}

const MiB = 1024 * 1024;

export function defaultBridgeOptions(limits: Limits): BridgeOptions {
  // A frame is one StreamRequest plus a few bytes of envelope.
  const maxFrameBytes = limits.maxRequestBytes + 64;
  return {
    maxFrameBytes,
    highWaterMark: MiB,
    maxRunningCalls: 1024,
    // Always room for two frames of the largest size.
    maxRunningBytes: Math.max(16 * MiB, 2 * maxFrameBytes),
    // Past the high-water mark by more than any single reply frame a workflow yields.
    maxBufferedBytes: 16 * MiB,
    drainPollMs: 10,
  };
}

/** The handlers a bridge runs: the very ones behind the Connect router. Build once per process. */
export interface BridgeHandlers extends StreamingHandlers {
  readonly core: PttCore;
  readonly options: BridgeOptions;
  readonly hello: Uint8Array;
}

export function createBridgeHandlers(
  core: PttCore,
  options?: Partial<BridgeOptions>,
  handlers: StreamingHandlers = createStreamingHandlers(core),
): BridgeHandlers {
  const opts = { ...defaultBridgeOptions(core.limits), ...options };
  const limits: Record<string, bigint> = { max_frame_bytes: BigInt(opts.maxFrameBytes) };
  for (const [key, name] of Object.entries(LIMIT_NAMES)) {
    limits[name] = BigInt(core.limits[key as keyof Limits]);
  }
  const hello = toBinary(
    ServerFrameSchema,
    create(ServerFrameSchema, {
      callId: 0,
      body: {
        case: "hello",
        value: { protocolVersion: 1, server: `ptt-edge/${core.version}`, limits },
      },
    }),
  );
  return {
    core,
    options: opts,
    streamAudio: handlers.streamAudio,
    streamAudioOnce: handlers.streamAudioOnce,
    interruptSession: handlers.interruptSession,
    hello,
  };
}

type ServerBody = MessageInitShape<typeof ServerFrameSchema>["body"];

/** The answer to a Ping on call_id 0, the one clients send (docs/protocol.md §6). */
const PONG = encodeServerFrame(0, { case: "pong", value: {} });

/**
 * One bridge WebSocket (docs/protocol.md §6): decodes ClientFrames, runs each call through
 * the same handlers as the Connect router, multiplexes them by call_id, and ends
 * every call with exactly one CallEnd. Runtime-neutral: the binding feeds it
 * messages and drain/close events through a BridgeSocket.
 */
export class BridgeConnection {
  private readonly calls = new Map<number, LazyHandlerContext>();
  private readonly flow: FlowControl;
  private closed = false;
  /** Shutting down: new calls get CallEnd unavailable. */
  private stopping = false;
  /** Set by closeWhenIdle: closes the socket once no call runs. */
  private idleClose: (() => void) | undefined;

  constructor(
    private readonly handlers: BridgeHandlers,
    private readonly socket: BridgeSocket,
    private readonly requestHeader: Headers,
    private readonly url: string,
    /** Called once when the socket closed (a BridgeHub forgets it). */
    private readonly onClose?: () => void,
  ) {
    this.flow = new FlowControl(socket, handlers.options);
  }

  /** Sends Hello: the first frame on every connection. */
  open(): void {
    this.write(this.handlers.hello);
  }

  /** One WebSocket message from the client. */
  receive(data: Uint8Array | string): void {
    if (this.closed) return;
    if (typeof data === "string") {
      this.fail(CLOSE.unsupportedData, "text frames are not supported: send binary ClientFrames");
      return;
    }
    const max = this.handlers.options.maxFrameBytes;
    if (data.byteLength > max) {
      this.fail(CLOSE.tooBig, `frame of ${data.byteLength} bytes exceeds max_frame_bytes ${max}`);
      return;
    }
    if (this.flow.overflowing) {
      // Every frame is answered, at least by a CallEnd: a client that sends without reading
      // would grow the send buffer without bound where the runtime cannot stop reading.
      this.fail(
        CLOSE.tryAgainLater,
        `over ${this.handlers.options.maxBufferedBytes} bytes wait to be sent: read them, then reconnect`,
      );
      return;
    }
    let frame: ClientFrame;
    try {
      frame = fromBinary(ClientFrameSchema, data, BINARY_READ_OPTIONS);
    } catch {
      this.fail(CLOSE.invalidPayload, "undecodable frame: expected a protobuf ClientFrame");
      return;
    }
    this.dispatch(frame, data.byteLength);
  }

  /** The runtime saw the socket's send buffer drain. */
  drained(): void {
    this.flow.drained();
  }

  /** The socket closed: cancel its running calls; session buffers live in the store, untouched. */
  closedByPeer(): void {
    if (this.closed) return;
    this.closed = true;
    const gone = cancelled("bridge socket closed");
    for (const ctx of this.calls.values()) ctx.abort(gone);
    this.calls.clear();
    this.flow.close();
    this.idleClose?.();
    this.onClose?.();
  }

  /** Shutdown, first step: new calls get CallEnd unavailable; running calls go on. */
  stopAccepting(): void {
    this.stopping = true;
  }

  /**
   * Shutdown, last step: closes the socket with 1001 as soon as no call runs (their CallEnds
   * sent), at the latest after `waitMs`, cancelling what still runs then. Resolves once closed.
   */
  closeWhenIdle(waitMs: number): Promise<void> {
    this.stopping = true;
    return new Promise((resolve) => {
      if (this.closed) return resolve();
      const close = () => {
        clearTimeout(timer);
        this.idleClose = undefined;
        if (!this.closed) this.fail(CLOSE.goingAway, "server shutting down");
        resolve();
      };
      const timer = setTimeout(close, waitMs);
      this.idleClose = close;
      if (this.calls.size === 0) close();
    });
  }

  get runningCalls(): number {
    return this.calls.size;
  }

  private dispatch(frame: ClientFrame, bytes: number): void {
    const id = frame.callId;
    const body = frame.body;
    if (body.case === "cancel") {
      // Cancelling a finished or unknown call is a no-op by contract.
      this.calls.get(id)?.abort(cancelled("call cancelled by the client"));
      return;
    }
    if (body.case === "ping") {
      // Not a call: answered at once, past flow control (a few bytes, queued behind whatever
      // waits to be sent, which is the point: it arrives once the line carries frames again).
      this.write(id === 0 ? PONG : encodeServerFrame(id, { case: "pong", value: {} }));
      return;
    }
    if (id === 0) {
      this.end(0, invalidArgument("call_id", "must be > 0"));
      return;
    }
    if (body.case === undefined) {
      this.end(
        id,
        invalidArgument("body", "a ClientFrame needs stream_audio, interrupt, cancel or ping"),
      );
      return;
    }
    if (this.calls.has(id)) {
      // The running call with this id goes on; only the newcomer is refused.
      this.end(id, invalidArgument("call_id", `${id} is already running on this socket`));
      return;
    }
    const requestBytes = embeddedMessageBytes(frame, bytes);
    const maxRequest = this.handlers.core.limits.maxRequestBytes;
    const refused = this.stopping
      ? unavailable("server shutting down: call another instance")
      : requestBytes > maxRequest
        ? resourceExhausted(
            LIMIT_NAMES.maxRequestBytes,
            `request message of ${requestBytes} bytes is larger than ${maxRequest}`,
          )
        : this.flow.refusal(bytes);
    if (refused) {
      this.end(id, refused);
      return;
    }
    const method =
      body.case === "streamAudio"
        ? StreamingService.method.streamAudio
        : StreamingService.method.interruptSession;
    // Lazy: a COLLECT never reads its signal or request headers, so they are never built.
    const ctx: LazyHandlerContext = new LazyHandlerContext({
      method,
      protocolName: "bridge",
      url: this.url,
      requestHeader: callHeaders(this.requestHeader, frame.metadata),
      // Reply slots count per socket; a reply core found stalled ends with its CallEnd
      // (RESOURCE_EXHAUSTED reply_stall_ms), queued behind what the client did not read.
      transport: { connection: this, endStalled: (error) => ctx.abort(error) },
    });
    this.calls.set(id, ctx);
    this.flow.started(bytes);
    const run =
      body.case === "streamAudio"
        ? this.runStreamAudio(id, body.value, ctx)
        : this.runInterrupt(id, body.value, ctx);
    run.then(
      () => this.finish(id, ctx, bytes),
      (err: unknown) => this.finish(id, ctx, bytes, err),
    );
  }

  private async runStreamAudio(
    id: number,
    req: StreamRequest,
    ctx: LazyHandlerContext,
  ): Promise<void> {
    const one = await this.handlers.streamAudioOnce?.(req, ctx);
    if (one !== undefined) {
      // A COLLECT or CANCEL: what the loop below does with the generator's one yield and throw.
      let sent = false;
      if (one.frame !== undefined && !this.closed && !ctx.aborted) {
        const wait = this.writable(ctx);
        if (wait) await wait;
        if (!this.closed && !ctx.aborted) {
          this.send(id, { case: "response", value: one.frame });
          sent = true;
        }
      }
      if (one.error !== undefined && (sent || one.frame === undefined)) throw one.error;
      if (ctx.aborted) throw ctx.abortReason;
      return;
    }
    // Leaving the loop early (break, throw) returns the generator, so its cleanup runs.
    for await (const response of this.handlers.streamAudio(req, ctx)) {
      if (this.closed || ctx.aborted) break;
      const wait = this.writable(ctx);
      if (wait) await wait;
      if (this.closed || ctx.aborted) break;
      this.send(id, { case: "response", value: response });
    }
    if (ctx.aborted) throw ctx.abortReason;
  }

  private async runInterrupt(
    id: number,
    req: InterruptRequest,
    ctx: LazyHandlerContext,
  ): Promise<void> {
    const res = await this.handlers.interruptSession(req, ctx);
    const wait = this.writable(ctx);
    if (wait) await wait;
    if (ctx.aborted) throw ctx.abortReason;
    this.send(id, { case: "interrupt", value: res });
  }

  private finish(id: number, ctx: LazyHandlerContext, bytes: number, err?: unknown): void {
    if (this.calls.get(id) !== ctx) return; // socket closed meanwhile: nobody to tell
    this.calls.delete(id);
    const metadata: Record<string, string> = {};
    ctx.headersSet?.forEach((v, k) => {
      metadata[k] = v;
    });
    ctx.trailersSet?.forEach((v, k) => {
      metadata[k] = v;
    });
    // Releases the context's deadline timer and signal, with a reason made once.
    ctx.abort(ABORTED);
    this.end(id, err === undefined ? undefined : ConnectError.from(err), metadata);
    this.flow.ended(bytes);
    if (this.idleClose && this.calls.size === 0) this.idleClose();
  }

  private end(id: number, error?: ConnectError, metadata: Record<string, string> = {}): void {
    this.send(id, {
      case: "end",
      value: {
        code: error ? codeToString(error.code) : "",
        message: error ? error.rawMessage : "",
        metadata: error ? { ...metadata, ...headersToRecord(error.metadata) } : metadata,
      },
    });
  }

  private send(callId: number, body: ServerBody): void {
    if (this.closed) return;
    this.write(encodeServerFrame(callId, body));
  }

  private write(bytes: Uint8Array): void {
    if (this.socket.send(bytes) === false) {
      // The runtime dropped the frame (Bun past its backpressure limit): rather than a reply
      // with a hole or a call without its CallEnd, the client reconnects and resends.
      this.fail(CLOSE.tryAgainLater, "send buffer full: reconnect and resend");
    }
  }

  /**
   * undefined when the socket can take more now; otherwise resolves once it drained,
   * the socket closed, or the call was cancelled (so a parked reply never outlives them).
   */
  private writable(ctx: LazyHandlerContext): Promise<void> | undefined {
    if (this.closed || this.flow.canSend) return undefined;
    return this.flow.wait(ctx.signal);
  }

  private fail(code: number, reason: string): void {
    this.socket.close(code, reason);
    this.closedByPeer();
  }
}

function headersToRecord(headers: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  headers.forEach((v, k) => {
    out[k] = v;
  });
  return out;
}

/**
 * Bytes of the request message a frame carries: the frame less its envelope (call_id and the
 * body field's tag and length). max_frame_bytes leaves room for that envelope, so the frame
 * limit alone let a StreamRequest up to 57 bytes over max_request_bytes through; gRPC and
 * Connect refuse it. An upper bound when the frame also carried unknown fields.
 */
function embeddedMessageBytes(frame: ClientFrame, frameBytes: number): number {
  const id = frame.callId;
  const idField = id === 0 ? 0 : 1 + varintLength(id);
  const rest = frameBytes - idField - 1;
  // The body's length prefix: the longest prefix that leaves room for the length it encodes.
  for (let n = 1; n <= 5; n++) {
    if (rest - n < 128 ** n) return Math.max(0, rest - n);
  }
  return rest;
}

/**
 * A call's request headers: the socket's, plus the ptt-* metadata of the frame that started
 * it (ptt-resume-from). Only ptt-* names: a frame never overrides the socket's credentials.
 */
function callHeaders(socket: Headers, metadata: { [key: string]: string }): Headers {
  let headers = socket;
  for (const [name, value] of Object.entries(metadata)) {
    if (!name.toLowerCase().startsWith("ptt-")) continue;
    if (headers === socket) headers = new Headers(socket);
    headers.set(name, value);
  }
  return headers;
}
