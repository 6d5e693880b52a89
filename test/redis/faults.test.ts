import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createClient as createRedisClient } from "@redis/client";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/core/ptt-core.js";
import { openRedisBackend, type RedisBackend } from "../../src/drivers/redis/redis-backend.js";
import { StreamingService } from "../../src/gen/streaming_pb.js";
import { type NodeServer, startNodeServer } from "../../src/runtimes/node/server.js";
import {
  collect,
  commit,
  newDevice,
  newSession,
  replyText,
  streamAudio,
} from "../contract/calls.js";
import { longText } from "../contract/commit.cases.js";
import { TEST_LIMITS } from "../contract/target.js";
import { type RedisServer, startRedisServer } from "../support/redis-server.js";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.js";

/** Redis going away and coming back, and what an idle Redis holds afterwards (nothing). */
describe("Redis faults", { timeout: 30_000 }, () => {
  let redis: RedisServer;
  const opened: { server: NodeServer; backend: RedisBackend }[] = [];

  async function instance(redisUrl: string, limits = TEST_LIMITS, resumeWindowMs?: number) {
    const backend = await openRedisBackend(
      { url: redisUrl, prefix: "ptt", commandTimeoutMs: 1000 },
      silentLogger,
    );
    const server = await startNodeServer({
      port: 0,
      graceMs: 0,
      config: {
        limits,
        echoDelayMs: 20,
        store: backend.store,
        replyBus: backend.replyBus,
        journal: backend.journal,
        resumeWindowMs,
      },
    });
    opened.push({ server, backend });
    const client = createClient(StreamingService, createGrpcTransport({ baseUrl: server.url }));
    return { server, client };
  }

  const readyz = async (server: NodeServer) => (await fetch(`${server.url}/readyz`)).status;

  /** Polls /readyz until it says 200 (the instance reconnected by itself). */
  async function untilReady(server: NodeServer): Promise<void> {
    const deadline = Date.now() + 15_000;
    while ((await readyz(server)) !== 200) {
      if (Date.now() > deadline) throw new Error("the instance did not recover in 15 s");
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  beforeAll(async () => {
    redis = await startRedisServer();
  }, 30_000);

  afterEach(async () => {
    for (const { server, backend } of opened.splice(0)) {
      await server.close(0);
      await backend.close();
    }
    await redis.start(); // a case that stopped it leaves it running for the next
  });

  afterAll(async () => {
    await redis?.close();
  });

  it("Redis unreachable: UNAVAILABLE at once, /readyz 503; back: recovers, acked chunks kept", async () => {
    const proxy: TcpProxy = await startTcpProxy({ host: "127.0.0.1", port: redis.port });
    try {
      const { server, client } = await instance(`redis://127.0.0.1:${proxy.port}`);
      const hw = newDevice("fault");
      const sid = newSession();
      for (let seq = 1; seq <= 3; seq++) {
        expect((await streamAudio(client, collect(hw, sid, seq, `${seq} `))).code).toBeUndefined();
      }
      proxy.refuse = true;
      proxy.dropAll();
      const r = await streamAudio(client, collect(hw, sid, 4, "4 "));
      expect(Code[r.code ?? -1]).toBe("Unavailable");
      expect(r.message).toMatch(/^session store: /);
      expect(r.ms).toBeLessThan(1000);
      expect(await readyz(server)).toBe(503);
      await expect(client.interruptSession({ hardwareId: hw })).rejects.toMatchObject({
        code: Code.Unavailable,
      });
      proxy.refuse = false;
      await untilReady(server);
      const done = await streamAudio(client, commit(hw, sid));
      expect(done.code).toBeUndefined();
      expect(replyText(done)).toBe("1 2 3 ");
    } finally {
      await proxy.close();
    }
  });

  it("redis-server stopped and restarted: calls fail fast meanwhile, then both instances work again, reply stops included", async () => {
    const a = await instance(redis.url);
    const b = await instance(redis.url);
    await redis.stop();
    const hw = newDevice("fault");
    const r = await streamAudio(a.client, collect(hw, newSession(), 1, "lost"));
    expect(Code[r.code ?? -1]).toBe("Unavailable");
    expect(r.ms).toBeLessThan(1000);
    expect(await readyz(a.server)).toBe(503);
    await redis.start();
    await Promise.all([untilReady(a.server), untilReady(b.server)]);
    const sid = newSession();
    expect((await streamAudio(a.client, collect(hw, sid, 1, "back "))).code).toBeUndefined();
    expect((await streamAudio(b.client, collect(hw, sid, 2, "again"))).code).toBeUndefined();
    // The reply bus subscribed again too: B stops a reply running on A.
    let firstFrame!: () => void;
    const started = new Promise<void>((res) => {
      firstFrame = res;
    });
    const reply = streamAudio(a.client, commit(hw, sid, { prompt: longText(300) }), {
      onFrame: (f) => f.case === "textChunk" && firstFrame(),
    });
    await started;
    await waitFor(async () =>
      (await b.client.interruptSession({ hardwareId: hw })).interruptedSessions.includes(sid),
    );
    const done = await reply;
    expect(Code[done.code ?? -1]).toBe("Canceled");
  });

  it("after the TTLs an idle Redis is empty, swept or not (DBSIZE 0), reply journals too", async () => {
    const limits = { ...TEST_LIMITS, idleTtlMs: 300, maxHoldMs: 1000, tombstoneTtlMs: 400 };
    const admin = createRedisClient({ url: redis.url });
    await admin.connect();
    try {
      await admin.flushAll();
      for (const swept of [true, false]) {
        const { server, client } = await instance(redis.url, limits, 500);
        const hw = newDevice("ttl");
        const [abandoned, committed, cancelled] = [newSession(), newSession(), newSession()];
        await streamAudio(client, collect(hw, abandoned, 1, "never committed"));
        await streamAudio(client, collect(hw, committed, 1, "committed"));
        expect(replyText(await streamAudio(client, commit(hw, committed)))).toBe("committed");
        // Its reply is journaled for the window: resumable now.
        const journal = await admin.keys(`ptt:{${hw}}:reply:*`);
        expect(journal).toEqual([`ptt:{${hw}}:reply:${committed}`]);
        const again = await streamAudio(client, commit(hw, committed), {
          headers: { "ptt-resume-from": "0" },
        });
        expect(replyText(again)).toBe("committed");
        await streamAudio(client, collect(hw, cancelled, 1, "cancelled"));
        await streamAudio(client, { hardwareId: hw, sessionId: cancelled, phase: 3 });
        await streamAudio(client, { hardwareId: hw, sessionId: newSession(), phase: 3 });
        expect(await admin.dbSize()).toBeGreaterThan(0);
        // Unswept: the instance is gone (no sweeper), only Redis's TTLs are left to clean up.
        if (!swept) {
          const { backend } = opened.splice(0)[0] as (typeof opened)[number];
          await server.close(0);
          await backend.close();
        }
        await waitFor(async () => (await admin.dbSize()) === 0, 10_000);
        const left = await admin.keys("*");
        expect(left).toEqual([]);
        if (swept) {
          // Past the window the reply cannot be resumed any more.
          const late = await streamAudio(client, commit(hw, committed), {
            headers: { "ptt-resume-from": "0" },
          });
          expect(late.code).toBe(Code.NotFound);
        }
      }
    } finally {
      admin.destroy();
    }
  });
});

async function waitFor(check: () => Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met in ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
