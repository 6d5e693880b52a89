import * as http2 from "node:http2";
import { create, type DescMessage, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type MethodImplSpec } from "@connectrpc/connect";
import type { Compression } from "@connectrpc/connect/protocol";
import { parseTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import type { CallTransport } from "../../core/call-transport.js";
import { decodeError, standInRequest } from "../../core/request-decoding.js";
import { ABORTED, FastHandlerContext } from "./fast-context.js";
import { type Envelope, EnvelopeReader } from "./grpc-envelope-reader.js";

// One call of the gRPC fast path (grpc-fast-path.ts): read, run, answer, as connect's gRPC
// handler does (protocol-grpc/handler-factory.js), without its pipeline.

// connect's defaults (limit-io.js): compress response messages from 1 KiB, no timeout cap.
const COMPRESS_MIN_BYTES = 1024;
const CONTENT_TYPE = "application/grpc+proto";
const COMPRESSED_FLAG = 1;

export interface CallOptions {
  /** Largest request message, checked on its 5-byte prefix (connect's readMaxBytes). */
  readMaxBytes: number;
  /** Aborts every running call's signal (server shutdown). */
  shutdownSignal: AbortSignal;
  /** Messages sent again and again (acks), with their bytes: sent without encoding them. */
  encoded?: ReadonlyMap<unknown, Uint8Array> | undefined;
}

export interface Route {
  spec: MethodImplSpec;
  /** The request message from its bytes: fromBinary, or the same faster (decoders option). */
  decode: (bytes: Uint8Array) => unknown;
  /** How connect names the kind in "missing input message for <kind> method". */
  kindName: string;
  /** A server-streaming method's calls of one frame, without its generator (OneFrameImpl). */
  oneFrame?: OneFrameImpl | undefined;
}

/**
 * What a server-streaming method yields and then throws for a call of at most one frame, or
 * undefined when the call is not one of those (the generator runs it).
 */
export type OneFrameImpl = (
  input: never,
  ctx: FastHandlerContext,
) => Promise<{ frame: unknown; error: unknown } | undefined>;

const CALL = Symbol("grpc fast path call");
type CallStream = http2.ServerHttp2Stream & { [CALL]?: FastCall };
function ignore() {}
function onStreamData(this: CallStream, chunk: Buffer) {
  this[CALL]?.onData(chunk);
}
function onStreamEnd(this: CallStream) {
  this[CALL]?.onEnd();
}
function onStreamClose(this: CallStream) {
  this[CALL]?.onClose();
}
function onWantTrailers(this: CallStream) {
  const trailers = this[CALL]?.trailers;
  if (trailers && !this.closed) this.sendTrailers(trailers);
}

export class FastCall implements CallTransport {
  /** The HTTP/2 connection: reply slots are shared fairly between connections. */
  readonly connection: object;
  private readonly ctx: FastHandlerContext;
  private readonly reader: EnvelopeReader;
  private readonly compression: Compression | null;
  private readonly encoded: ReadonlyMap<unknown, Uint8Array> | undefined;
  private readonly timeoutError: ConnectError | undefined = undefined;
  private input: unknown;
  private hasInput = false;
  /** Request bytes are ignored once the call failed or ran. */
  private reading = true;
  private headersSent = false;
  private closed = false;
  private done = false;
  /** Set when the call ends; sent when node:http2 asks for them (onWantTrailers). */
  trailers: http2.OutgoingHttpHeaders | undefined;

  constructor(
    private readonly stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    private readonly route: Route,
    options: CallOptions,
    negotiate: (accepted: string | null) => Compression | null,
  ) {
    this.encoded = options.encoded;
    const timeoutHeader = headers["grpc-timeout"];
    let timeoutMs: number | undefined;
    if (timeoutHeader !== undefined) {
      const timeout = parseTimeout(headerValue(timeoutHeader), Number.MAX_SAFE_INTEGER);
      this.timeoutError = timeout.error;
      timeoutMs = timeout.timeoutMs;
    }
    // A stream without its session is one node:http2 already closed: counted on its own.
    this.connection = stream.session ?? stream;
    this.ctx = new FastHandlerContext(
      route.spec.method,
      headers,
      options.shutdownSignal,
      timeoutMs,
      this,
    );
    this.reader = new EnvelopeReader(options.readMaxBytes);
    this.compression = negotiate(headerValue(headers["grpc-accept-encoding"]));
  }

  /** `refusal`: an error to end the call with before reading it (an unknown grpc-encoding). */
  start(refusal?: ConnectError): void {
    const { stream } = this;
    // Listeners shared by every call (no closures per call): they find the call on the stream.
    // 'close' and 'end' come once per stream: `on`, as `once` wraps each listener anew.
    (stream as CallStream)[CALL] = this;
    stream.on("error", ignore);
    stream.on("close", onStreamClose);
    stream.on("data", onStreamData);
    stream.on("end", onStreamEnd);
    // connect raises a bad grpc-timeout where it reads the request: the same code and frames.
    if (refusal) this.fail(refusal);
    else if (this.timeoutError) this.failDecoding(this.timeoutError);
  }

  onData(chunk: Buffer): void {
    if (!this.reading) return;
    try {
      for (const env of this.reader.push(chunk)) this.accept(env);
    } catch (err) {
      this.failDecoding(err);
    }
  }

  private accept(env: Envelope): void {
    const { kindName } = this.route;
    if (env.flags === COMPRESSED_FLAG) {
      // Only an identity request reaches the fast path: connect's words (decodeError maps them).
      throw new ConnectError(
        "received compressed envelope, but do not know how to decompress",
        Code.Internal,
      );
    }
    if (env.flags !== 0) {
      // gRPC defines one flag bit (compressed); anything else is not a gRPC message.
      throw new ConnectError(
        `request: envelope flags must be 0 or 1; got ${env.flags}`,
        Code.InvalidArgument,
      );
    }
    if (this.hasInput) {
      throw new ConnectError(
        `protocol error: received extra input message for ${kindName} method`,
        Code.Unimplemented,
      );
    }
    let message: unknown;
    try {
      message = this.route.decode(env.data);
    } catch (e) {
      throw new ConnectError(
        `parse binary: ${e instanceof Error ? e.message : String(e)}`,
        Code.Internal,
      );
    }
    this.hasInput = true;
    this.input = message;
  }

  onEnd(): void {
    if (!this.reading) return;
    if (this.reader.incomplete) {
      this.failDecoding(
        new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument),
      );
    } else if (!this.hasInput) {
      const msg = `protocol error: missing input message for ${this.route.kindName} method`;
      this.failDecoding(new ConnectError(msg, Code.Unimplemented));
    } else {
      this.reading = false;
      void this.run();
    }
  }

  onClose(): void {
    this.closed = true;
    if (this.done) return;
    // Like connect-node: an RST_STREAM code maps to a ConnectError, anything else is a plain abort.
    this.ctx.abort(errorFromResetCode(this.stream.rstCode) ?? ABORTED);
  }

  /**
   * Core found the reply stalled (the client took none of it for reply_stall_ms, its window
   * shut): the stream is reset with ENHANCE_YOUR_CALM, which gRPC clients read as
   * RESOURCE_EXHAUSTED; what waited to be sent is dropped. The trailers could not pass the
   * frames queued before them.
   */
  endStalled(): void {
    if (this.closed || this.stream.destroyed) return;
    this.stream.close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
  }

  /** Ends the call with `err` before the implementation ran. */
  private fail(err: unknown): void {
    this.reading = false;
    this.end(err);
  }

  /**
   * The request could not be read (undecodable, missing, extra, over the size limit): the same
   * code as connect's pipeline with core's requestDecoding interceptor. StreamAudio runs on a
   * stand-in request that fails with the error, as there (its error_message frame and all).
   */
  private failDecoding(err: unknown): void {
    if (!this.reading) return;
    this.reading = false;
    // Unary calls: connect decodes them before any interceptor, so they keep its codes.
    const error = this.route.spec.kind === "unary" ? err : decodeError(err, this.route.spec.method);
    const standIn =
      error instanceof ConnectError ? standInRequest(this.route.spec.method, error) : undefined;
    if (standIn) {
      this.input = standIn;
      void this.run();
    } else {
      this.end(error);
    }
  }

  private async run(): Promise<void> {
    const { spec } = this.route;
    const output = spec.method.output;
    try {
      if (spec.kind === "unary") {
        const res = await spec.impl(this.input as never, this.ctx);
        const sending = this.send(output, res);
        if (sending) await sending;
      } else if (spec.kind === "server_streaming") {
        const one = this.route.oneFrame
          ? await this.route.oneFrame(this.input as never, this.ctx)
          : undefined;
        if (one !== undefined) {
          // The generator's one yield and its throw, in the same order.
          if (one.frame !== undefined) {
            const sending = this.send(output, one.frame);
            if (sending) await sending;
          }
          this.end(one.error);
          return;
        }
        const it = spec.impl(this.input as never, this.ctx)[Symbol.asyncIterator]();
        try {
          let first = true;
          for (let r = await it.next(); r.done !== true; r = await it.next()) {
            const sending = this.send(output, r.value);
            if (sending) await sending;
            if (this.closed) break;
            if (first) {
              first = false;
              // node:http2 sends what was written once this turn of the event loop is over
              // (a setImmediate): a reply whose next frames are ready at once (echo, cached
              // text) would hold its first frame back until it had made them all.
              await nextTurn();
            }
          }
        } finally {
          if (this.closed) await it.return?.();
        }
      }
      this.end(undefined);
    } catch (err) {
      // connect ends a call whose implementation threw `undefined` with OK, so do we.
      this.end(err);
    }
  }

  /**
   * Writes one message; returns a promise only when the caller must wait (compression, or
   * the stream's buffer is full), so the common call takes no extra turn of the microtask queue.
   */
  private send(desc: DescMessage, value: unknown): Promise<void> | undefined {
    if (this.closed) return undefined;
    let data: Uint8Array;
    try {
      data = this.encoded?.get(value) ?? toBinary(desc, create(desc, value as never));
    } catch (e) {
      const m = e instanceof Error ? e.message : String(e);
      throw new ConnectError(`serialize binary: ${m}`, Code.Internal);
    }
    if (this.compression && data.byteLength >= COMPRESS_MIN_BYTES) {
      return this.compression.compress(data).then((c) => this.write(COMPRESSED_FLAG, c));
    }
    return this.write(0, data);
  }

  private write(flags: number, data: Uint8Array): Promise<void> | undefined {
    const frame = Buffer.allocUnsafe(5 + data.byteLength);
    frame[0] = flags;
    frame.writeUInt32BE(data.byteLength, 1);
    frame.set(data, 5);
    this.respond();
    if (this.closed || this.stream.write(frame)) return undefined;
    return new Promise<void>((resolve) => {
      const go = () => {
        this.stream.off("drain", go);
        this.stream.off("close", go);
        resolve();
      };
      this.stream.on("drain", go);
      this.stream.on("close", go);
    });
  }

  private respond(): void {
    // stream.closed too: Bun's and Deno's node:http2 may order "end" and "close" differently.
    if (this.headersSent || this.closed || this.stream.destroyed || this.stream.closed) return;
    this.headersSent = true;
    const h: http2.OutgoingHttpHeaders = { ":status": 200, "content-type": CONTENT_TYPE };
    if (this.compression) h["grpc-encoding"] = this.compression.name;
    this.ctx.headersSet?.forEach((value, name) => {
      h[name] = value;
    });
    this.stream.respond(h, { waitForTrailers: true });
  }

  /** Headers (when not yet sent), then trailers with the status: connect's order and fields. */
  private end(err: unknown): void {
    if (this.done) return;
    this.done = true;
    this.ctx.finish();
    if (this.closed || this.stream.destroyed || this.stream.closed) return;
    const trailers: http2.OutgoingHttpHeaders = { "grpc-status": "0" };
    if (err !== undefined) {
      const error =
        err instanceof ConnectError
          ? err
          : new ConnectError("internal error", Code.Internal, undefined, undefined, err);
      // On the handler's trailers, like connect: error metadata is appended to them.
      setTrailerStatus(this.ctx.responseTrailer, error);
    }
    this.ctx.trailersSet?.forEach((value, name) => {
      trailers[name] = value;
    });
    this.respond();
    this.trailers = trailers;
    this.stream.on("wantTrailers", onWantTrailers);
    this.stream.end();
  }
}

/** Resolves after the event loop's pending immediates (node:http2's write among them) ran. */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** connect-node's connectErrorFromH2ResetCode (node-error.js), which it does not export. */
function errorFromResetCode(rstCode: number): ConnectError | undefined {
  const code = RESET_CODES[rstCode];
  if (code === undefined) return undefined;
  const name = H2_ERROR_NAMES[rstCode] as string;
  const msg = `http/2 stream closed with error code ${name} (0x${rstCode.toString(16)})`;
  return new ConnectError(msg, code);
}

const H2_ERROR_NAMES = [
  "NO_ERROR",
  "PROTOCOL_ERROR",
  "INTERNAL_ERROR",
  "FLOW_CONTROL_ERROR",
  "SETTINGS_TIMEOUT",
  "STREAM_CLOSED",
  "FRAME_SIZE_ERROR",
  "REFUSED_STREAM",
  "CANCEL",
  "COMPRESSION_ERROR",
  "CONNECT_ERROR",
  "ENHANCE_YOUR_CALM",
  "INADEQUATE_SECURITY",
  "HTTP_1_1_REQUIRED",
];
// NO_ERROR and STREAM_CLOSED map to nothing (a plain abort), as in connect-node.
const RESET_CODES: Record<number, Code> = {
  1: Code.Internal,
  2: Code.Internal,
  3: Code.Internal,
  4: Code.Internal,
  6: Code.Internal,
  7: Code.Unavailable,
  8: Code.Canceled,
  9: Code.Internal,
  10: Code.Internal,
  11: Code.ResourceExhausted,
  12: Code.PermissionDenied,
  13: Code.PermissionDenied,
};

function headerValue(v: string | string[] | undefined): string | null {
  if (v === undefined) return null;
  return Array.isArray(v) ? v.join(", ") : v;
}
