import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import { Code, ConnectError, createHandlerContext } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { LIMIT_NAMES, type Limits } from "../../core/limits.js";
import type { PttCore } from "../../core/ptt-core.js";
import { createStreamingHandlers, type StreamingHandlers } from "../../core/streaming-service.js";
import {
  type ClientFrame,
  ClientFrameSchema,
  type ServerFrame,
  ServerFrameSchema,
} from "../../gen/bridge_pb.js";
import {
  type InterruptRequest,
  StreamingService,
  type StreamRequest,
} from "../../gen/streaming_pb.js";
import { type BridgeSocket, CLOSE } from "./socket-port.js";

export interface BridgeOptions {
  /** Largest ClientFrame accepted; bigger ones close the socket with 1009. */
  maxFrameBytes: number;
  /** Send-buffer bytes above which calls wait and the socket stops being read. */
  highWaterMark: number;
  /** Running calls above which the socket stops being read until some finish. */
  maxRunningCalls: number;
}

export function defaultBridgeOptions(limits: Limits): BridgeOptions {
  return {
    // A frame is one StreamRequest plus a few bytes of envelope.
    maxFrameBytes: limits.maxRequestBytes + 64,
    highWaterMark: 1024 * 1024,
    maxRunningCalls: 1024,
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
    interruptSession: handlers.interruptSession,
    hello,
  };
}

/** Why a finished call's signal is aborted (what connect's own `abort()` would say). */
const CALL_FINISHED = new DOMException("This operation was aborted", "AbortError");

type ServerBody = MessageInitShape<typeof ServerFrameSchema>["body"];

/**
 * One bridge WebSocket (CONTRACT §6): decodes ClientFrames, runs each call through
 * the same handlers as the Connect router, multiplexes them by call_id, and ends
 * every call with exactly one CallEnd. Runtime-neutral: the binding feeds it
 * messages and drain/close events through a BridgeSocket.
 */
export class BridgeConnection {
  private readonly calls = new Map<number, ReturnType<typeof createHandlerContext>>();
  private closed = false;
  private readingPaused = false;
  private drainWaiters: (() => void)[] = [];

  constructor(
    private readonly handlers: BridgeHandlers,
    private readonly socket: BridgeSocket,
    private readonly requestHeader: Headers,
    private readonly url: string,
  ) {}

  /** Sends Hello: the first frame on every connection. */
  open(): void {
    this.socket.send(this.handlers.hello);
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
    let frame: ClientFrame;
    try {
      frame = fromBinary(ClientFrameSchema, data);
    } catch {
      this.fail(CLOSE.invalidPayload, "undecodable frame: expected a protobuf ClientFrame");
      return;
    }
    this.dispatch(frame);
  }

  /** The runtime saw the socket's send buffer drain (or the socket closed). */
  drained(): void {
    if (!this.closed && this.socket.bufferedAmount() > this.handlers.options.highWaterMark) return;
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const resume of waiters) resume();
    this.updateReading();
  }

  /** The socket closed: cancel its running calls; session buffers live in the store, untouched. */
  closedByPeer(): void {
    this.closed = true;
    const gone = new ConnectError("bridge socket closed", Code.Canceled);
    for (const ctx of this.calls.values()) ctx.abort(gone);
    this.calls.clear();
    this.drained();
  }

  get runningCalls(): number {
    return this.calls.size;
  }

  private dispatch(frame: ClientFrame): void {
    const id = frame.callId;
    const body = frame.body;
    if (body.case === "cancel") {
      // Cancelling a finished or unknown call is a no-op by contract.
      this.calls.get(id)?.abort(new ConnectError("call cancelled by the client", Code.Canceled));
      return;
    }
    if (id === 0) {
      this.end(0, invalidArgument("call_id: must be > 0"));
      return;
    }
    if (body.case === undefined) {
      this.end(id, invalidArgument("body: a ClientFrame needs stream_audio, interrupt or cancel"));
      return;
    }
    if (this.calls.has(id)) {
      // The running call with this id goes on; only the newcomer is refused.
      this.end(id, invalidArgument(`call_id: ${id} is already running on this socket`));
      return;
    }
    const method =
      body.case === "streamAudio"
        ? StreamingService.method.streamAudio
        : StreamingService.method.interruptSession;
    const ctx = createHandlerContext({
      service: StreamingService,
      method,
      protocolName: "bridge",
      requestMethod: "POST",
      url: this.url,
      requestHeader: this.requestHeader,
    });
    this.calls.set(id, ctx);
    this.updateReading();
    const run =
      body.case === "streamAudio"
        ? this.runStreamAudio(id, body.value, ctx)
        : this.runInterrupt(id, body.value, ctx);
    run.then(
      () => this.finish(id, ctx),
      (err: unknown) => this.finish(id, ctx, err),
    );
  }

  private async runStreamAudio(id: number, req: StreamRequest, ctx: HandlerContext): Promise<void> {
    // Leaving the loop early (break, throw) returns the generator, so its cleanup runs.
    for await (const response of this.handlers.streamAudio(req, ctx)) {
      if (this.closed || ctx.signal.aborted) break;
      const wait = this.writable(ctx.signal);
      if (wait) await wait;
      if (this.closed || ctx.signal.aborted) break;
      this.send(id, { case: "response", value: response });
    }
    ctx.signal.throwIfAborted();
  }

  private async runInterrupt(
    id: number,
    req: InterruptRequest,
    ctx: HandlerContext,
  ): Promise<void> {
    const res = await this.handlers.interruptSession(req, ctx);
    this.send(id, { case: "interrupt", value: res });
  }

  private finish(id: number, ctx: ReturnType<typeof createHandlerContext>, err?: unknown): void {
    if (this.calls.get(id) !== ctx) return; // socket closed meanwhile: nobody to tell
    this.calls.delete(id);
    const metadata: Record<string, string> = {};
    ctx.responseHeader.forEach((v, k) => {
      metadata[k] = v;
    });
    ctx.responseTrailer.forEach((v, k) => {
      metadata[k] = v;
    });
    // Releases the context's deadline timer and linked signals; a reason made once, not a
    // DOMException (with its stack trace) per call.
    ctx.abort(CALL_FINISHED);
    this.end(id, err === undefined ? undefined : ConnectError.from(err), metadata);
    this.updateReading();
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
    const frame: ServerFrame = create(ServerFrameSchema, { callId, body });
    this.socket.send(toBinary(ServerFrameSchema, frame));
  }

  /**
   * undefined when the socket can take more now; otherwise resolves once it drained,
   * the socket closed, or the call was cancelled (so a parked reply never outlives them).
   */
  private writable(signal: AbortSignal): Promise<void> | undefined {
    if (this.closed || this.socket.bufferedAmount() <= this.handlers.options.highWaterMark) {
      return undefined;
    }
    this.updateReading();
    return new Promise((resolve) => {
      const done = () => {
        signal.removeEventListener("abort", done);
        resolve();
      };
      signal.addEventListener("abort", done, { once: true });
      this.drainWaiters.push(done);
    });
  }

  /** Reads only while the socket can absorb replies and the call count is in bounds. */
  private updateReading(): void {
    const { highWaterMark, maxRunningCalls } = this.handlers.options;
    const pause =
      !this.closed &&
      (this.calls.size >= maxRunningCalls || this.socket.bufferedAmount() > highWaterMark);
    if (pause === this.readingPaused) return;
    this.readingPaused = pause;
    if (pause) this.socket.pauseReading?.();
    else this.socket.resumeReading?.();
  }

  private fail(code: number, reason: string): void {
    this.socket.close(code, reason);
    this.closedByPeer();
  }
}

function invalidArgument(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

function headersToRecord(headers: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  headers.forEach((v, k) => {
    out[k] = v;
  });
  return out;
}
