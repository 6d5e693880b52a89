// The floor: the least a node:http2 server can do per gRPC call. It reads the request and
// answers every call with one prebuilt COLLECT_ACCEPTED frame and the ack's trailers, without
// parsing anything. Runs unchanged on Node, Bun and Deno; prints "LISTENING <port>".
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import process from "node:process";

// StreamResponse{end_message: "COLLECT_ACCEPTED"} in a 5-byte gRPC frame.
const text = new TextEncoder().encode("COLLECT_ACCEPTED");
const ack = new Uint8Array(5 + 2 + text.length);
new DataView(ack.buffer).setUint32(1, 2 + text.length);
ack.set([0x1a, text.length], 5);
ack.set(text, 7);

const server = http2.createServer();
server.on("stream", (stream) => {
  stream.on("error", () => {});
  stream.on("data", () => {});
  stream.once("end", () => {
    if (stream.destroyed) return;
    stream.respond(
      { ":status": 200, "content-type": "application/grpc+proto" },
      { waitForTrailers: true },
    );
    stream.once("wantTrailers", () =>
      stream.sendTrailers({ "grpc-status": "0", "ptt-collect": "accepted", "ptt-last-seq": "0" }),
    );
    stream.end(ack);
  });
});
server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  process.stdout.write(`LISTENING ${(server.address() as AddressInfo).port}\n`);
});
