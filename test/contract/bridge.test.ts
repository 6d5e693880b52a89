import { afterAll, beforeAll, describe } from "vitest";
import { WebSocket } from "ws";
import { BridgeChannel, type WebSocketFactory } from "../../src/bridge/client/channel.js";
import { createBridgeTransport } from "../../src/bridge/client/transport.js";
import { type NodeServer, startNodeServer } from "../../src/runtimes/node/server.js";
import { SkewClock } from "../support/skew-clock.js";
import { contractSuite } from "./suite.js";
import { type Target, TEST_ECHO_DELAY_MS, TEST_LIMITS } from "./target.js";

// The contract suite over the WebSocket bridge: a Node `ws` client through the client library.
describe("contract: node/bridge", () => {
  const clock = new SkewClock();
  let server: NodeServer;
  let channel: BridgeChannel;
  let target: Target;
  beforeAll(async () => {
    server = await startNodeServer({
      port: 0,
      config: { limits: TEST_LIMITS, clock, echoDelayMs: TEST_ECHO_DELAY_MS },
      graceMs: 0,
    });
    channel = new BridgeChannel(`${server.url.replace("http", "ws")}/v1/bridge`, {
      WebSocket: WebSocket as unknown as WebSocketFactory,
    });
    await channel.ready();
    target = {
      name: "node/bridge",
      transport: createBridgeTransport(channel),
      limits: TEST_LIMITS,
      echoDelayMs: TEST_ECHO_DELAY_MS,
    };
  });
  afterAll(async () => {
    channel.close();
    await server.close(0);
  });
  contractSuite(
    { advanceClock: (ms) => clock.advance(ms), headersWithTrailers: true },
    () => target,
  );
});
