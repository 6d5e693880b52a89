// Run by test/node/first-frame-flush.test.ts in its own process: a gRPC fast path whose
// StreamAudio yields a first frame, then keeps the event loop busy for BUSY_MS (a workflow
// making its next part synchronously, as a local synthesiser would) before the second. Prints
// "LISTENING <port>".
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { StreamingService } from "../../src/gen/streaming_pb.js";
import {
  createGrpcFastPath,
  installStreamHandler,
} from "../../src/runtimes/node/grpc-fast-path.js";

const BUSY_MS = Number(process.env.BUSY_MS ?? 300);
const impl = {
  async *streamAudio() {
    yield { content: { case: "textChunk" as const, value: "first" } };
    const until = Date.now() + BUSY_MS;
    while (Date.now() < until) {
      // Busy: nothing else runs in this process meanwhile.
    }
    yield { content: { case: "textChunk" as const, value: "second" } };
  },
};
const server = http2.createServer({}, () => {});
installStreamHandler(
  server,
  createGrpcFastPath(StreamingService, impl, {
    readMaxBytes: 1 << 20,
    shutdownSignal: new AbortController().signal,
  }),
);
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`LISTENING ${(server.address() as AddressInfo).port}\n`);
});
