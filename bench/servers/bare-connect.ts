// A bare connect-node server: connectNodeAdapter on node:http2 with a StreamAudio that only
// acks (no validation, no store). What connect's own pipeline costs per call.
// Runs on Node, Bun and Deno; prints "LISTENING <port>".
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import process from "node:process";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { StreamingService } from "../../src/gen/streaming_pb.js";

const handler = connectNodeAdapter({
  routes: (router) =>
    router.service(StreamingService, {
      async *streamAudio(_req, ctx) {
        ctx.responseTrailer.set("ptt-collect", "accepted");
        ctx.responseTrailer.set("ptt-last-seq", "0");
        yield { content: { case: "endMessage", value: "COLLECT_ACCEPTED" } };
      },
    }),
});
const server = http2.createServer({}, handler);
server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  process.stdout.write(`LISTENING ${(server.address() as AddressInfo).port}\n`);
});
