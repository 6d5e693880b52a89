// Run by test/node/grpc-fast-path.test.ts under Bun and Deno: does their node:http2 take the
// fast path (installStreamHandler) and serve a call through it? Prints one JSON line.
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import {
  RequestPhase,
  StreamingService,
  StreamRequestSchema,
  StreamResponseSchema,
} from "../../src/gen/streaming_pb.js";
import { FastHandlerContext } from "../../src/runtimes/node/fast-context.js";
import {
  createGrpcFastPath,
  installStreamHandler,
} from "../../src/runtimes/node/grpc-fast-path.js";

let fast: boolean | undefined;
const impl = {
  async *streamAudio(_req: unknown, ctx: { responseTrailer: Headers }) {
    fast = ctx instanceof FastHandlerContext;
    ctx.responseTrailer.set("ptt-collect", "accepted");
    yield { content: { case: "endMessage" as const, value: "COLLECT_ACCEPTED" } };
  },
};
const shutdown = new AbortController();
const server = http2.createServer(
  {},
  connectNodeAdapter({ routes: (r) => r.service(StreamingService, impl) }),
);
const installed = installStreamHandler(
  server,
  createGrpcFastPath(StreamingService, impl, {
    readMaxBytes: 1 << 20,
    shutdownSignal: shutdown.signal,
  }),
);
await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
const { port } = server.address() as AddressInfo;
const body = toBinary(
  StreamRequestSchema,
  create(StreamRequestSchema, { hardwareId: "probe", phase: RequestPhase.COLLECT }),
);
const framed = new Uint8Array(5 + body.byteLength);
new DataView(framed.buffer).setUint32(1, body.byteLength);
framed.set(body, 5);
const session = http2.connect(`http://127.0.0.1:${port}`);
const req = session.request({
  ":method": "POST",
  ":path": "/streaming.StreamingService/StreamAudio",
  "content-type": "application/grpc",
  te: "trailers",
});
const chunks: Uint8Array[] = [];
let trailers: Record<string, unknown> = {};
req.on("data", (c: Uint8Array) => chunks.push(c));
req.on("trailers", (t) => {
  trailers = { ...t };
});
req.end(framed);
await new Promise((resolve) => req.on("close", resolve));
const data = Buffer.concat(chunks);
const reply = fromBinary(StreamResponseSchema, data.subarray(5));
console.log(JSON.stringify({ installed, fast, reply: reply.content.value, trailers }));
session.close();
server.close();
process.exit(0);
