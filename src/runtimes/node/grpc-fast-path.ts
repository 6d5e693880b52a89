import type * as http2 from "node:http2";
import { type DescMessage, type DescService, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createServiceImplSpec, type ServiceImpl } from "@connectrpc/connect";
import { type Compression, compressionNegotiate } from "@connectrpc/connect/protocol";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import type { PttCore } from "../../core/ptt-core.js";
import { BINARY_READ_OPTIONS } from "../../core/request-decoding.js";
import {
  CANCEL_ACK_FRAME,
  COLLECT_ACK_FRAME,
  createStreamAudioOnce,
} from "../../core/stream-audio.js";
import { decodeStreamRequest } from "../../core/stream-request-binary.js";
import { createServiceImpl } from "../../core/streaming-service.js";
import {
  StreamingService,
  StreamRequestSchema,
  StreamResponseSchema,
} from "../../gen/streaming_pb.js";
import { type CallOptions, FastCall, type OneFrameImpl, type Route } from "./grpc-fast-call.js";

export interface GrpcFastPathOptions extends CallOptions {
  /** Response compressions, as given to connectNodeAdapter (default gzip, br like it). */
  acceptCompression?: Compression[];
  /** By method name: its one-frame calls without the generator (grpc-fast-call.ts). */
  oneFrame?: Record<string, OneFrameImpl>;
  /**
   * By request message: a decoder that returns and throws what protobuf-es's fromBinary (with
   * BINARY_READ_OPTIONS) does, faster. Other messages are decoded by fromBinary.
   */
  decoders?: ReadonlyMap<DescMessage, (bytes: Uint8Array) => unknown>;
}

/** Takes a stream and returns true, or returns false and leaves it untouched. */
export type StreamHandler = (
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
) => boolean;

// connect's gRPC handler matches /^application\/grpc(?:\+(?:(json)...|proto))?$/i; we take the binary ones.
const BINARY_GRPC = /^application\/grpc(?:\+proto)?$/i;

/**
 * The gRPC fast path: uncompressed binary gRPC calls of unary and server-streaming methods
 * skip connect's pipeline of async-iterable stages, and run the same service implementation
 * with a real handler context. Codes, messages, headers and trailers are connect's
 * (protocol-grpc/handler-factory.js); every other request is left to connect.
 */
export function createGrpcFastPath<S extends DescService>(
  service: S,
  impl: Partial<ServiceImpl<S>>,
  options: GrpcFastPathOptions,
): StreamHandler {
  const spec = createServiceImplSpec(service, impl);
  const routes = new Map<string, Route>();
  for (const m of Object.values(spec.methods)) {
    if (m.kind !== "unary" && m.kind !== "server_streaming") continue;
    const kindName = m.kind === "unary" ? "unary" : "server-streaming";
    const oneFrame = m.kind === "server_streaming" ? options.oneFrame?.[m.method.name] : undefined;
    const input = m.method.input;
    const decode =
      options.decoders?.get(input) ??
      ((bytes: Uint8Array) => fromBinary(input, bytes, BINARY_READ_OPTIONS));
    routes.set(`/${service.typeName}/${m.method.name}`, { spec: m, kindName, oneFrame, decode });
  }
  const accept = options.acceptCompression ?? [compressionGzip, compressionBrotli];
  const negotiate = negotiator(accept);
  const known = new Set(["identity", ...accept.map((c) => c.name)]);
  const supported = accept.map((c) => c.name).join(", ");
  return (stream, headers) => {
    if (headers[":method"] !== "POST") return false;
    const route = routes.get(headers[":path"] as string);
    if (route === undefined) return false;
    const type = headers["content-type"];
    if (typeof type !== "string" || !BINARY_GRPC.test(type)) return false;
    const encoding = headers["grpc-encoding"];
    if (typeof encoding === "string" && !known.has(encoding)) {
      // connect would echo the whole value back (5,000 characters, if that is what came).
      const name = encoding.length > 40 ? `${encoding.slice(0, 40)}…` : encoding;
      const refusal = new ConnectError(
        `unknown compression "${name}": supported encodings are ${supported}`,
        Code.Unimplemented,
        { "grpc-accept-encoding": supported },
      );
      new FastCall(stream, headers, route, options, negotiate).start(refusal);
      return true;
    }
    if (encoding !== undefined && encoding !== "identity") return false;
    new FastCall(stream, headers, route, options, negotiate).start();
    return true;
  };
}

/**
 * Puts `handle` in front of the http2 server's compatibility layer (the 'stream' listener
 * that node:http2, Bun and Deno install for a 'request' listener): streams it declines go
 * to the request listener as before. Returns false, changing nothing, when the server does
 * not have exactly that one listener.
 */
export function installStreamHandler(server: http2.Http2Server, handle: StreamHandler): boolean {
  const listeners = server.listeners("stream");
  const compat = listeners[0];
  if (listeners.length !== 1 || typeof compat !== "function") return false;
  server.removeListener("stream", compat as (...args: unknown[]) => void);
  server.on("stream", function dispatch(this: unknown, stream, headers, ...rest: unknown[]) {
    if (!handle(stream, headers)) compat.call(this, stream, headers, ...rest);
  });
  return true;
}

/** The first handler that takes the stream takes it. */
export function firstOf(...handlers: (StreamHandler | undefined)[]): StreamHandler {
  const list = handlers.filter((h): h is StreamHandler => h !== undefined);
  return (stream, headers) => {
    for (const h of list) if (h(stream, headers)) return true;
    return false;
  };
}

/** connect's compressionNegotiate for an identity request, memoised per grpc-accept-encoding. */
function negotiator(accept: Compression[]): (accepted: string | null) => Compression | null {
  const known = new Map<string | null, Compression | null>();
  return (accepted) => {
    let c = known.get(accepted);
    if (c === undefined) {
      c = compressionNegotiate(accept, null, accepted, "grpc-accept-encoding").response;
      // Clients send a handful of distinct values; do not let odd ones grow the map.
      if (known.size < 64) known.set(accepted, c);
    }
    return c;
  };
}

/** The fast path for ptt-edge's StreamingService, over the same implementation as its router. */
export function pttGrpcFastPath(core: PttCore, shutdownSignal: AbortSignal): StreamHandler {
  return createGrpcFastPath(StreamingService, createServiceImpl(core), {
    readMaxBytes: core.limits.maxRequestBytes,
    shutdownSignal,
    oneFrame: { StreamAudio: createStreamAudioOnce(core) as OneFrameImpl },
    encoded: new Map(
      [COLLECT_ACK_FRAME, CANCEL_ACK_FRAME].map((f) => [f, toBinary(StreamResponseSchema, f)]),
    ),
    decoders: new Map([[StreamRequestSchema, decodeStreamRequest]]),
  });
}
