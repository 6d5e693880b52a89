import { Buffer } from "node:buffer";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { SessionStore } from "../../src/core/ports.js";
import { silentLogger } from "../../src/core/ptt-core.js";
import { type Chunk, openSession } from "../../src/core/session.js";
import { createSessionStore } from "../../src/core/session-engine.js";
import {
  openRedisConnections,
  type RedisConnections,
} from "../../src/drivers/redis/redis-connection.js";
import { createRedisDriver } from "../../src/drivers/redis/redis-driver.js";
import { STEP } from "../../src/drivers/redis/redis-lua.js";
import { ChunkMode } from "../../src/gen/streaming_pb.js";
import { STORE_TEST_LIMITS, testStore } from "../contract/store.js";
import { ManualClock } from "../support/manual-clock.js";
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

describe("redis store: Redis specifics", () => {
  const opened: SessionStore[] = [];
  afterAll(async () => {
    for (const s of opened) await s.close();
  });

  /** One "instance": its own driver (and view of the devices) on the shared connection. */
  function instance(prefix: string, limits = STORE_TEST_LIMITS, clock = new ManualClock()) {
    const store = createSessionStore({
      limits,
      clock,
      // Gauges never too old here: a loaded machine must not add reads to the counts below.
      driver: createRedisDriver({
        client: conn.client,
        prefix,
        logger: silentLogger,
        gaugesMaxAgeMs: 60_000,
      }),
    });
    opened.push(store);
    return store;
  }

  const key = (hardwareId = `redis-dev-${Math.random().toString(36).slice(2, 8)}`) => ({
    hardwareId,
    sessionId: crypto.randomUUID(),
  });
  const delta = (seq: number, text: string): Chunk => ({ seq, mode: ChunkMode.DELTA, text });

  it("a hold's chunks after its first are one round trip each (one STEP script, nothing else awaited)", async () => {
    const prefix = `ptt-test-${++stores}`;
    const store = instance(prefix);
    await store.collect(key(), delta(1, "warm-up")); // the scripts are loaded (NOSCRIPT once)
    const monitor = conn.client.duplicate();
    await monitor.connect();
    const lines: string[] = [];
    await monitor.monitor((line) => lines.push(String(line)));
    try {
      const k = key();
      for (let seq = 1; seq <= 10; seq++) await store.collect(k, delta(seq, `${seq} `));
      const marker = `done-${crypto.randomUUID()}`;
      await conn.client.sendCommand(["ECHO", marker]);
      await vi.waitFor(() => expect(lines.some((l) => l.includes(marker))).toBe(true));
      const steps = lines.filter((l) => l.toLowerCase().includes(`"evalsha" "${STEP.sha}"`));
      const reads = lines.filter((l) => /"hmget"/i.test(l) && !l.includes("lua]"));
      // The first chunk: a read (STEP that writes nothing, and the gauges), then its write.
      expect(steps).toHaveLength(11);
      expect(reads).toHaveLength(1); // beside the first read, in the same round trip
      expect((await store.commit(k, [], "t")).text).toBe("1 2 3 4 5 6 7 8 9 10 ");
    } finally {
      await monitor.close();
    }
  });

  it("two instances alternating a hold's chunks: each step on a stale view runs again on what Redis had", async () => {
    const prefix = `ptt-test-${++stores}`;
    const [a, b] = [instance(prefix), instance(prefix)];
    const k = key();
    for (let seq = 1; seq <= 20; seq++) {
      const r = await (seq % 2 ? a : b).collect(k, delta(seq, `${seq},`));
      expect(r).toMatchObject({ outcome: "accepted", created: seq === 1, lastSeq: seq });
    }
    const turn = await a.commit(k, [], "t");
    expect(turn.text).toBe(Array.from({ length: 20 }, (_, i) => `${i + 1},`).join(""));
    // b's view still has the hold open: its step runs again on the tombstone, and refuses.
    await expect(b.collect(k, delta(21, "late"))).rejects.toMatchObject({
      code: Code.FailedPrecondition,
    });
  });

  it("a device deleted and created again by another instance: a view of its old self never lands", async () => {
    const prefix = `ptt-test-${++stores}`;
    const clockB = new ManualClock();
    const [a, b] = [instance(prefix), instance(prefix, STORE_TEST_LIMITS, clockB)];
    const hw = key().hardwareId;
    const old = key(hw);
    await a.collect(old, delta(1, "old "));
    // On b: cancelled, forgotten after the tombstone TTL (the device's keys are gone), and the
    // device created again by a new hold: its write count starts over.
    expect(await b.cancel(old)).toBe("cancelled");
    clockB.advance(STORE_TEST_LIMITS.tombstoneTtlMs + 1);
    await b.sweep();
    await b.collect(key(hw), delta(1, "new"));
    // a's view (the old hold open, one write) must not land on the new device's first write.
    expect(await a.collect(old, delta(2, "again"))).toMatchObject({ created: true });
    expect((await a.commit(old, [], "t")).text).toBe("again");
  });

  it("the open-session limits hold across instances", async () => {
    const prefix = `ptt-test-${++stores}`;
    const limits = {
      ...STORE_TEST_LIMITS,
      maxOpenSessionsPerDevice: 2,
      maxOpenSessionsPerInstance: 3,
    };
    const [a, b] = [instance(prefix, limits), instance(prefix, limits)];
    // A caller reaches another instance after its answer crossed the network: at least one turn
    // of the event loop, in which an instance sends its gauges.
    const hop = () => new Promise((r) => setImmediate(r));
    const hw = key().hardwareId;
    await a.collect(key(hw), delta(1, "x"));
    await b.collect(key(hw), delta(1, "x"));
    await hop();
    await expect(a.collect(key(hw), delta(1, "x"))).rejects.toMatchObject({
      rawMessage: /^max_open_sessions_per_device: /,
    });
    await b.collect(key(), delta(1, "x"));
    await hop();
    await expect(a.collect(key(), delta(1, "x"))).rejects.toMatchObject({
      rawMessage: /^max_open_sessions_per_instance: .* 3 open sessions$/,
    });
    expect(await a.stats()).toMatchObject({ openSessions: 3 });
  });

  it("within one instance the instance-wide limits are exact: concurrent admissions see each other", async () => {
    const prefix = `ptt-test-${++stores}`;
    const s = instance(prefix, { ...STORE_TEST_LIMITS, maxOpenSessionsPerInstance: 5 });
    const settled = await Promise.allSettled(
      Array.from({ length: 20 }, () => s.collect(key(), delta(1, "x"))),
    );
    expect(settled.filter((r) => r.status === "fulfilled")).toHaveLength(5);
    for (const r of settled) {
      if (r.status === "rejected") {
        expect(r.reason).toMatchObject({ rawMessage: /^max_open_sessions_per_instance: / });
      }
    }
    expect(await s.stats()).toEqual({ openSessions: 5, bufferedBytes: 5 });
  });

  const AUDIO_LIMITS = {
    ...STORE_TEST_LIMITS,
    maxAudioBytesPerSession: 1024 * 1024,
    maxScreenshotBytes: 64 * 1024,
  };
  const pcm = (bytes: number, seed: number) =>
    new Uint8Array(bytes).map((_, i) => (i * 31 + seed) & 0xff);
  const withAudio = (seq: number, data: Uint8Array, extra: Partial<Chunk> = {}): Chunk => ({
    ...delta(seq, `${seq} `),
    audio: { data, encoding: "pcm_s16le", sampleRate: 16_000, channels: 1 },
    ...extra,
  });
  const netIn = async () =>
    Number(/total_net_input_bytes:(\d+)/.exec(String(await conn.client.info("stats")))?.[1]);

  it("a chunk sends Redis its own audio, not the hold's: 50 chunks of 4 KiB are ~200 KiB, not 6 MB", async () => {
    const store = instance(`ptt-test-${++stores}`, AUDIO_LIMITS);
    const k = key();
    const pieces = Array.from({ length: 50 }, (_, i) => pcm(4096, i));
    const before = await netIn();
    for (const [i, piece] of pieces.entries()) await store.collect(k, withAudio(i + 1, piece));
    const sent = (await netIn()) - before;
    // Each chunk: its 4 KiB, the record's JSON (a few hundred bytes per part) and the scripts'
    // arguments. Re-sending the record with every piece in base64 was 6.8 MB.
    expect(sent).toBeLessThan(1024 * 1024);
    const turn = await store.commit(k, [], "t");
    expect(turn.audio).toHaveLength(50);
    expect(
      turn.audio.every((a, i) => Buffer.from(a.data).equals(Buffer.from(pieces[i] as Uint8Array))),
    ).toBe(true);
  });

  it("audio and a screenshot written on one instance commit whole on another (whose view had no payloads)", async () => {
    const prefix = `ptt-test-${++stores}`;
    const [a, b] = [instance(prefix, AUDIO_LIMITS), instance(prefix, AUDIO_LIMITS)];
    const k = key();
    const pieces = [pcm(3000, 1), pcm(5000, 2), pcm(7, 3)];
    const shot = { data: "iVBORw0KGgo".repeat(300), width: 640, height: 480 };
    await a.collect(k, withAudio(1, pieces[0] as Uint8Array, { screenshot: shot }));
    await a.collect(k, withAudio(2, pieces[1] as Uint8Array));
    // b reads the hold without its payloads (a COLLECT needs their sizes only), adds a piece.
    await b.collect(k, withAudio(3, pieces[2] as Uint8Array));
    const turn = await b.commit(k, [], "t");
    expect(turn.text).toBe("1 2 3 ");
    expect(turn.audio.map((x) => Buffer.from(x.data).toString("hex"))).toEqual(
      pieces.map((x) => Buffer.from(x).toString("hex")),
    );
    expect(turn.screenshot).toEqual(shot);
  });

  it("a hold stored by an earlier version (audio in base64 in the record) is read and committed", async () => {
    const prefix = `ptt-test-${++stores}`;
    const clock = new ManualClock();
    const store = instance(prefix, AUDIO_LIMITS, clock);
    const k = key();
    const bytes = pcm(300, 9);
    const session = openSession(k, clock.now());
    const stored = {
      ...session,
      mode: ChunkMode.DELTA,
      chunks: 1,
      seqs: [1],
      lastSeq: 1,
      parts: [{ key: 1, order: 1, text: "old " }],
      textBytes: 4,
      audio: [
        {
          key: 1,
          order: 1,
          audio: {
            data: Buffer.from(bytes).toString("base64"),
            encoding: "pcm_s16le",
            sampleRate: 16_000,
            channels: 1,
          },
        },
      ],
      audioBytes: 300,
    };
    const device = `${prefix}:{${k.hardwareId}}`;
    await conn.client.set(`${device}:${k.sessionId}`, JSON.stringify(stored), { PX: 60_000 });
    await conn.client.hSet(device, { v: "1", [`o:${k.sessionId}`]: String(clock.now() + 1000) });
    await conn.client.pExpire(device, 60_000);
    await store.collect(k, withAudio(2, pcm(5, 1)));
    const turn = await store.commit(k, [], "t");
    expect(turn.text).toBe("old 2 ");
    expect(Buffer.from(turn.audio[0]?.data ?? []).equals(Buffer.from(bytes))).toBe(true);
    expect([...(turn.audio[1]?.data ?? [])]).toEqual([...pcm(5, 1)]);
  });
});
