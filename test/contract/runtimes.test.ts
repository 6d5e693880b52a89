import type { Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { BridgeChannel, type WebSocketFactory } from "../../src/bridge/client/channel.js";
import { createBridgeTransport } from "../../src/bridge/client/transport.js";
import { RawBridge } from "../bridge/raw-bridge.js";
import { limitsEnv, type SpawnedRuntime, spawnRuntime } from "../support/spawn-runtime.js";
import { contractSuite } from "./suite.js";
import {
  type Capabilities,
  type Target,
  TEST_ECHO_DELAY_MS,
  TEST_LIMITS,
  workflowRunsAt,
} from "./target.js";

/**
 * What Bun and Deno cannot do, in one place:
 * - no movable clock in a spawned process: TTL cases run in process on Node and in the store suite;
 * - Bun.serve / Deno.serve cannot send HTTP trailers (nor serve h2c), so gRPC and HTTP/2 Connect
 *   are served by node:http2 on the runtime's second port (grpcUrl).
 */
const CAPABILITIES: Capabilities = {};

type Make = (rt: SpawnedRuntime, channel: () => BridgeChannel) => Transport;
const transports: Record<string, Make> = {
  grpc: (rt) => createGrpcTransport({ baseUrl: rt.grpcUrl }),
  "connect-h1": (rt) => createConnectTransport({ baseUrl: rt.url, httpVersion: "1.1" }),
  "connect-h2": (rt) => createConnectTransport({ baseUrl: rt.grpcUrl, httpVersion: "2" }),
  "grpc-web": (rt) => createGrpcWebTransport({ baseUrl: rt.url, httpVersion: "1.1" }),
  bridge: (_rt, channel) => createBridgeTransport(channel()),
};

for (const runtime of ["bun", "deno"] as const) {
  describe(`contract: ${runtime}`, () => {
    let rt: SpawnedRuntime;
    let channel: BridgeChannel;
    beforeAll(async () => {
      rt = await spawnRuntime(runtime, {
        ...limitsEnv(TEST_LIMITS),
        PTT_ECHO_DELAY_MS: String(TEST_ECHO_DELAY_MS),
        PTT_GRACE_MS: "0",
      });
      channel = new BridgeChannel(`${rt.url.replace("http", "ws")}/v1/bridge`, {
        WebSocket: WebSocket as unknown as WebSocketFactory,
      });
      await channel.ready();
    }, 60_000);
    afterAll(async () => {
      channel?.close();
      await rt?.stop();
    });
    for (const [name, make] of Object.entries(transports)) {
      describe(`${runtime}/${name}`, () => {
        let target: Target;
        beforeAll(() => {
          target = {
            name: `${runtime}/${name}`,
            transport: make(rt, () => channel),
            limits: TEST_LIMITS,
            echoDelayMs: TEST_ECHO_DELAY_MS,
            workflowRuns: () => workflowRunsAt(rt.url),
          };
        });
        contractSuite({ ...CAPABILITIES, headersWithTrailers: name === "bridge" }, () => target);
      });
    }
    // docs/protocol.md §6: the bridge's liveness probe is answered through this runtime's binding.
    it(`${runtime}/bridge: a Ping gets a Pong on its call_id, no CallEnd`, async () => {
      const raw = await RawBridge.open(`${rt.url.replace("http", "ws")}/v1/bridge`);
      try {
        raw.send(0, { case: "ping", value: {} });
        await raw.until(() => raw.call(0).frames.length === 2, "the Pong");
        expect(raw.call(0).frames.map((f) => f.case)).toEqual(["hello", "pong"]);
        expect(raw.call(0).ends).toEqual([]);
      } finally {
        raw.ws.close();
      }
    });
  });
}
