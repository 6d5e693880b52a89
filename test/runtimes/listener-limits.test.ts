// Issue 11 #4, #5 on Bun and Deno: their node:http2 gRPC port advertises
// MAX_CONCURRENT_STREAMS, caps open streams, resets requests that never end and closes idle
// connections; Bun.serve's port closes idle connections (its idleTimeout). What Deno.serve and
// Bun.serve cannot do is documented (README, Limits and timeouts).
import * as http2 from "node:http2";
import * as net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SA } from "../support/raw-rpc.js";
import { type SpawnedRuntime, spawnRuntime } from "../support/spawn-runtime.js";

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    p,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms),
    ),
  ]);
}

for (const runtime of ["bun", "deno"] as const) {
  describe(`${runtime}: listener limits`, () => {
    let rt: SpawnedRuntime;
    beforeAll(async () => {
      rt = await spawnRuntime(runtime, {
        PTT_IDLE_TIMEOUT_MS: "800",
        PTT_HEADERS_TIMEOUT_MS: "500",
        PTT_REQUEST_TIMEOUT_MS: "1000",
        PTT_H2_MAX_CONCURRENT_STREAMS: "7",
        PTT_MAX_OPEN_STREAMS: "2",
        PTT_GRACE_MS: "0",
      });
    }, 60_000);
    afterAll(() => rt?.stop());

    // Bun 1.4's node:http2 sends no RST_STREAM for a stream closed from its 'stream' event or a
    // timer (measured: the client never sees the stream end): the stream cap and the request
    // timeout do not hold on Bun's gRPC port (README, Limits and timeouts).
    it.skipIf(runtime === "bun")(
      "gRPC port: MAX_CONCURRENT_STREAMS advertised, streams past the cap refused, bodiless ones reset",
      async () => {
        const session = http2.connect(rt.grpcUrl);
        session.on("error", () => {});
        const settings = await within(
          new Promise<http2.Settings>((r) => session.once("remoteSettings", r)),
          10_000,
          "SETTINGS",
        );
        expect(settings.maxConcurrentStreams).toBe(7);
        const codes: Promise<number>[] = [];
        for (let i = 0; i < 3; i++) {
          const req = session.request(
            { ":method": "POST", ":path": SA, "content-type": "application/grpc", te: "trailers" },
            { endStream: false },
          );
          req.on("error", () => {});
          codes.push(new Promise((r) => req.once("close", () => r(req.rstCode ?? 0))));
        }
        const all = await within(Promise.all(codes), 15_000, "every stream closed");
        // Two were open (the instance cap) until the request timeout reset them; one was refused.
        expect([...all].sort()).toEqual(
          [
            http2.constants.NGHTTP2_REFUSED_STREAM,
            http2.constants.NGHTTP2_CANCEL,
            http2.constants.NGHTTP2_CANCEL,
          ].sort(),
        );
        session.destroy();
      },
      30_000,
    );

    it("gRPC port: an idle HTTP/2 connection gets GOAWAY and closes", async () => {
      const session = http2.connect(rt.grpcUrl);
      session.on("error", () => {});
      const closed = new Promise<void>((r) => session.once("close", () => r()));
      await within(closed, 15_000, "idle connection closed");
    }, 30_000);

    if (runtime === "bun") {
      it("Bun.serve: an idle connection is closed (idleTimeout)", async () => {
        const url = new URL(rt.url);
        const socket = net.connect(Number(url.port), url.hostname);
        socket.on("error", () => {});
        const closed = new Promise<void>((r) => socket.once("close", () => r()));
        // Bun checks idle connections every few seconds: closed well after its idleTimeout.
        await within(closed, 30_000, "idle Bun.serve connection closed");
      }, 40_000);
    }
  });
}
