import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe } from "vitest";
import { silentLogger } from "../../src/core/ptt-core.js";
import { openRedisBackend, type RedisBackend } from "../../src/drivers/redis/redis-backend.js";
import { type NodeServer, startNodeServer } from "../../src/runtimes/node/server.js";
import { contractSuite } from "../contract/suite.js";
import { TEST_LIMITS as BASE, type Target, TEST_ECHO_DELAY_MS } from "../contract/target.js";
import { alternatingTransport } from "../support/alternating-transport.js";
import { type RedisServer, startRedisServer } from "../support/redis-server.js";
import { SkewClock } from "../support/skew-clock.js";

/**
 * The contract suite over two Node instances sharing one Redis, every call going to the other
 * instance than the one before: a hold's chunks alternate between them and its COMMIT,
 * CANCEL or InterruptSession lands on either, and a resumed COMMIT on the other instance than
 * the one running the reply (its journal is a Redis Stream). One clock for both (TTL cases move it).
 */
// Half the reply slots per instance: 100 concurrent COMMITs still get one each, and filling
// both instances takes as many long replies as one instance with the usual limits.
const TEST_LIMITS = { ...BASE, maxConcurrentReplies: BASE.maxConcurrentReplies / 2 };

describe("contract: two Node instances sharing Redis (calls alternate)", () => {
  const clock = new SkewClock();
  let redis: RedisServer;
  const backends: RedisBackend[] = [];
  const servers: NodeServer[] = [];
  let target: Target;

  beforeAll(async () => {
    redis = await startRedisServer();
    for (let i = 0; i < 2; i++) {
      const backend = await openRedisBackend(
        { url: redis.url, prefix: "ptt", commandTimeoutMs: 5000 },
        silentLogger,
      );
      backends.push(backend);
      servers.push(
        await startNodeServer({
          port: 0,
          graceMs: 0,
          config: {
            limits: TEST_LIMITS,
            clock,
            echoDelayMs: TEST_ECHO_DELAY_MS,
            store: backend.store,
            replyBus: backend.replyBus,
            journal: backend.journal,
          },
        }),
      );
    }
    target = {
      name: "node+node/redis",
      transport: alternatingTransport(servers.map((s) => createGrpcTransport({ baseUrl: s.url }))),
      limits: TEST_LIMITS,
      echoDelayMs: TEST_ECHO_DELAY_MS,
      // A resume lands on the other instance than the COMMIT: count the runs of both.
      workflowRuns: async () => servers.reduce((n, s) => n + s.core.metrics.workflowRuns, 0),
    };
  }, 30_000);

  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close(0)));
    await Promise.all(backends.map((b) => b.close()));
    await redis?.close();
  });

  contractSuite({ advanceClock: (ms) => clock.advance(ms), instances: 2 }, () => target);
});
