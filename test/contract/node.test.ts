import type { Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe } from "vitest";
import { type NodeServer, startNodeServer } from "../../src/runtimes/node/server.js";
import { SkewClock } from "../support/skew-clock.js";
import { contractSuite } from "./suite.js";
import { type Target, TEST_ECHO_DELAY_MS, TEST_LIMITS } from "./target.js";

const transports: Record<string, (baseUrl: string) => Transport> = {
  grpc: (baseUrl) => createGrpcTransport({ baseUrl }),
  // The same gRPC calls through connect's own handler: the fast path is off on this server.
  "grpc-slow": (baseUrl) => createGrpcTransport({ baseUrl }),
  "connect-h1": (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1" }),
  "connect-h2": (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "2" }),
  "grpc-web": (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }),
};

for (const [name, makeTransport] of Object.entries(transports)) {
  describe(`contract: node/${name}`, () => {
    const clock = new SkewClock();
    let server: NodeServer;
    let target: Target;
    beforeAll(async () => {
      server = await startNodeServer({
        port: 0,
        config: { limits: TEST_LIMITS, clock, echoDelayMs: TEST_ECHO_DELAY_MS },
        graceMs: 0,
        grpcFastPath: name !== "grpc-slow",
      });
      target = {
        name: `node/${name}`,
        transport: makeTransport(server.url),
        limits: TEST_LIMITS,
        echoDelayMs: TEST_ECHO_DELAY_MS,
        workflowRuns: async () => server.core.metrics.workflowRuns,
      };
    });
    afterAll(() => server.close(0));
    contractSuite({ advanceClock: (ms) => clock.advance(ms) }, () => target);
  });
}
