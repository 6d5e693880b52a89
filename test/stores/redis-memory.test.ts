import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/core/ptt-core.js";
import {
  openRedisConnections,
  type RedisConnections,
} from "../../src/drivers/redis/redis-connection.js";
import { createRedisMemory } from "../../src/drivers/redis/redis-memory.js";
import { ManualClock } from "../support/manual-clock.js";
import { type RedisServer, startRedisServer } from "../support/redis-server.js";

const bounds = { maxTurns: 2, maxBytes: 1000, ttlMs: 1000 };
const turn = (n: number) => ({ user: `u${n}`, assistant: `a${n}` });

describe("Redis conversation memory (a real redis-server)", () => {
  let redis: RedisServer;
  const conns: RedisConnections[] = [];

  // Two instances: each its own connections to the one server.
  const open = async () => {
    const conn = openRedisConnections({
      url: redis.url,
      commandTimeoutMs: 5000,
      logger: silentLogger,
    });
    conns.push(conn);
    await conn.ready(10_000);
    return conn;
  };

  beforeAll(async () => {
    redis = await startRedisServer();
  }, 30_000);

  afterAll(async () => {
    await Promise.all(conns.map((c) => c.close()));
    await redis?.close();
  });

  it("keeps devices apart, bounded, across two instances, and an idle device leaves no key", async () => {
    const [a, b] = [await open(), await open()];
    const clock = new ManualClock();
    const one = createRedisMemory({ client: a.client, prefix: "mem", bounds, clock });
    const two = createRedisMemory({ client: b.client, prefix: "mem", bounds, clock });
    await one.remember("a", turn(1));
    await two.remember("a", turn(2));
    await one.remember("b", turn(9));
    await two.remember("a", turn(3));
    expect(await one.recall("a")).toEqual([turn(2), turn(3)]);
    expect(await two.recall("b")).toEqual([turn(9)]);
    await Promise.all([one.remember("c", turn(1)), two.remember("c", turn(2))]);
    expect((await one.recall("c")).length).toBe(2); // neither write lost the other's turn
    await two.forget("a");
    expect(await one.recall("a")).toEqual([]);
    // The engine's clock decides staleness; Redis's TTL (the idle bound) reclaims the key.
    clock.advance(1000);
    expect(await one.recall("b")).toEqual([]);
    expect(await a.client.pTTL("mem:{b}:memory")).toBeGreaterThan(0);
    expect(await a.client.pTTL("mem:{b}:memory")).toBeLessThanOrEqual(1000);
  });

  it("a memory value that is not ours reads as no memory, and is replaced", async () => {
    const { client } = await open();
    const memory = createRedisMemory({ client, prefix: "mem2", bounds, clock: new ManualClock() });
    await client.set("mem2:{x}:memory", "not json");
    expect(await memory.recall("x")).toEqual([]);
    await memory.remember("x", turn(1));
    expect(await memory.recall("x")).toEqual([turn(1)]);
  });
});
