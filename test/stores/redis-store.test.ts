import { afterAll, beforeAll } from "vitest";
import { silentLogger } from "../../src/core/ptt-core.js";
import { createSessionStore } from "../../src/core/session-engine.js";
import {
  openRedisConnections,
  type RedisConnections,
} from "../../src/drivers/redis/redis-connection.js";
import { createRedisDriver } from "../../src/drivers/redis/redis-driver.js";
import { testStore } from "../contract/store.js";
import { type RedisServer, startRedisServer } from "../support/redis-server.js";

let redis: RedisServer;
let conn: RedisConnections;
let stores = 0;

beforeAll(async () => {
  redis = await startRedisServer();
  conn = openRedisConnections({ url: redis.url, commandTimeoutMs: 5000, logger: silentLogger });
  await conn.ready(10_000);
}, 30_000);

afterAll(async () => {
  await conn?.close();
  await redis?.close();
});

// Each store its own prefix: an empty store on the shared server, as the suite expects.
testStore("redis", ({ limits, clock }) =>
  createSessionStore({
    limits,
    clock,
    driver: createRedisDriver({
      client: conn.client,
      prefix: `ptt-test-${++stores}`,
      logger: silentLogger,
    }),
  }),
);
