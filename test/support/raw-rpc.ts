import * as http2 from "node:http2";
import * as net from "node:net";
import { fromBinary } from "@bufbuild/protobuf";
import { type StreamResponse, StreamResponseSchema } from "../../src/gen/streaming_pb.js";

// Hand-made RPC calls over real sockets, for inputs a well-behaved client library cannot
// produce (unknown enum names, bad envelopes, odd headers). Each returns what came back.

export const SA = "/streaming.StreamingService/StreamAudio";

/** A 5-byte-prefixed message (gRPC, gRPC-Web, Connect streaming). */
export function envelope(data: Uint8Array | string, flags = 0): Buffer<ArrayBuffer> {
  const body = typeof data === "string" ? Buffer.from(data, "utf8") : Buffer.from(data);
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]) as Buffer<ArrayBuffer>;
}

/** Splits a body of envelopes. */
export function envelopes(body: Buffer): { flags: number; data: Buffer }[] {
  const out: { flags: number; data: Buffer }[] = [];
  let at = 0;
  while (at + 5 <= body.length) {
    const len = body.readUInt32BE(at + 1);
    out.push({ flags: body[at] as number, data: body.subarray(at + 5, at + 5 + len) });
    at += 5 + len;
  }
  return out;
}

export interface H2Result {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: Buffer;
  /** RST_STREAM code the server closed the stream with (0 = NO_ERROR). */
  rstCode: number;
  /** The decoded gRPC messages of the body. */
  frames: StreamResponse["content"][];
  /** grpc-status from the trailers, or from the headers of a trailers-only answer. */
  status: string | undefined;
  message: string;
}

/** One request on a fresh h2c connection; `body` written in full unless `writeOnly` says. */
export function h2Request(
  baseUrl: string,
  headers: http2.OutgoingHttpHeaders,
  body: Buffer | undefined,
  options: { endStream?: boolean; timeoutMs?: number } = {},
): Promise<H2Result> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(baseUrl);
    session.on("error", () => {});
    const req = session.request({ ":method": "POST", ...headers }, { endStream: false });
    const timer = setTimeout(() => {
      session.destroy();
      reject(new Error(`no answer within ${options.timeoutMs ?? 10_000} ms`));
    }, options.timeoutMs ?? 10_000);
    let resHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    req.on("response", (h) => {
      resHeaders = h;
    });
    req.on("trailers", (t) => {
      trailers = t;
    });
    req.on("data", (d: Buffer) => chunks.push(d));
    req.on("error", () => {});
    req.on("close", () => {
      clearTimeout(timer);
      const data = Buffer.concat(chunks);
      const grpc = String(resHeaders["content-type"] ?? "").startsWith("application/grpc+")
        ? envelopes(data).map((e) => fromBinary(StreamResponseSchema, e.data).content)
        : String(resHeaders["content-type"] ?? "") === "application/grpc"
          ? envelopes(data).map((e) => fromBinary(StreamResponseSchema, e.data).content)
          : [];
      const status = (trailers["grpc-status"] ?? resHeaders["grpc-status"]) as string | undefined;
      const message = decodeURIComponent(
        String(trailers["grpc-message"] ?? resHeaders["grpc-message"] ?? ""),
      );
      session.close();
      resolve({
        headers: resHeaders,
        trailers,
        body: data,
        rstCode: req.rstCode ?? 0,
        frames: grpc,
        status,
        message,
      });
    });
    if (body) req.write(body);
    if (options.endStream !== false) req.end();
  });
}

/** A gRPC call with raw request bytes (already enveloped). */
export function grpcRaw(
  baseUrl: string,
  body: Buffer,
  headers: http2.OutgoingHttpHeaders = {},
  path = SA,
): Promise<H2Result> {
  return h2Request(
    baseUrl,
    { ":path": path, "content-type": "application/grpc", te: "trailers", ...headers },
    body,
  );
}

/** Writes raw bytes on a TCP connection and collects everything until the server closes. */
export function rawHttp1(
  port: number,
  request: Buffer | string,
  options: {
    timeoutMs?: number;
    endAfterWrite?: boolean;
    /** Resolve as soon as what came back satisfies this. */
    until?: (text: string) => boolean;
    /** Read nothing until the whole request is written (a blocking write-then-read client). */
    readAfterWrite?: boolean;
  } = {},
): Promise<{ text: string; error?: string }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    let error: string | undefined;
    const timer = setTimeout(() => socket.destroy(), options.timeoutMs ?? 10_000);
    socket.on("data", (d) => {
      chunks.push(d);
      if (options.until?.(Buffer.concat(chunks).toString("latin1"))) socket.destroy();
    });
    socket.on("error", (e: NodeJS.ErrnoException) => {
      error = e.code ?? e.message;
    });
    socket.on("close", () => {
      clearTimeout(timer);
      resolve({ text: Buffer.concat(chunks).toString("latin1"), error });
    });
    if (options.readAfterWrite) socket.pause();
    socket.write(request, () => socket.resume());
    if (options.endAfterWrite) socket.end();
  });
}
