import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { openKv } from "@deno/kv";
import { afterAll, describe, expect, it } from "vitest";
import type { Limits } from "../../src/core/limits.js";
import type { SessionStore } from "../../src/core/ports.js";
import type { Chunk, SessionKey } from "../../src/core/session.js";
import { createDenoKvStore, type DenoKv } from "../../src/drivers/deno-kv/deno-kv-driver.js";
import { ChunkMode } from "../../src/gen/streaming_pb.js";
import { STORE_TEST_LIMITS, testStore } from "../contract/store.js";
import { ManualClock } from "../support/manual-clock.js";

// "": @deno/kv's in-memory KV (JavaScript). ":memory:": Deno's own SQLite backend (native), which
// enforces Deno KV's limits (64 KiB values, 800 KiB per atomic write) as Deno does.
for (const [name, path] of [
  ["deno-kv", ""],
  ["deno-kv (sqlite)", ":memory:"],
] as const) {
  testStore(name, async ({ limits, clock }) => {
    const kv = await openKv(path);
    const store = createDenoKvStore({ kv, limits, clock });
    return { ...store, close: () => store.close().finally(() => kv.close()) };
  });
}

const BIG: Limits = {
  ...STORE_TEST_LIMITS,
  maxAudioBytesPerSession: 8 * 1024 * 1024,
  maxScreenshotBytes: 4 * 1024 * 1024,
};

function key(): SessionKey {
  return {
    hardwareId: `kv-dev-${Math.random().toString(36).slice(2, 8)}`,
    sessionId: crypto.randomUUID(),
  };
}

function delta(seq: number, text: string, extra: Partial<Chunk> = {}): Chunk {
  return { seq, mode: ChunkMode.DELTA, text, ...extra };
}

function pcm(bytes: number, seed: number): Uint8Array {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

/** Byte equality without vitest's element-by-element deep equality (slow on MiBs). */
function same(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  return a !== undefined && b !== undefined && Buffer.from(a).equals(Buffer.from(b));
}

function audio(data: Uint8Array) {
  return { data, encoding: "pcm_s16le", sampleRate: 16_000, channels: 1 };
}

describe("deno-kv store: Deno KV specifics", () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  async function open(path = ":memory:", limits = STORE_TEST_LIMITS, clock = new ManualClock()) {
    const kv = await openKv(path);
    cleanups.push(() => kv.close());
    const store = (over: DenoKv = kv): SessionStore => {
      const s = createDenoKvStore({ kv: over, limits, clock });
      cleanups.push(() => s.close());
      return s;
    };
    return { kv, clock, store };
  }

  it("two stores over one database (two processes): 100 concurrent COMMITs run one turn", async () => {
    const { store } = await open();
    const [a, b] = [store(), store()];
    const k = key();
    // Both processes collect, concurrently, the chunks of one new hold.
    const collected = await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).collect(k, delta(i + 1, `${i + 1},`))),
    );
    expect(collected.filter((r) => r.created)).toHaveLength(1);
    const settled = await Promise.allSettled(
      Array.from({ length: 100 }, (_, i) => (i % 2 ? a : b).commit(k, [], `t${i}`)),
    );
    const turns = settled.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
    expect(turns).toHaveLength(1);
    expect(turns[0]?.text).toBe(Array.from({ length: 40 }, (_, i) => `${i + 1},`).join(""));
    for (const s of settled) {
      if (s.status === "rejected") {
        expect(s.reason).toBeInstanceOf(ConnectError);
        expect((s.reason as ConnectError).code).toBe(Code.AlreadyExists);
      }
    }
    expect(await a.stats()).toEqual({ openSessions: 0, bufferedBytes: 0 });
    expect(await b.stats()).toEqual({ openSessions: 0, bufferedBytes: 0 });
  });

  it("the open-session limits hold across stores sharing the database", async () => {
    const limits = {
      ...STORE_TEST_LIMITS,
      maxOpenSessionsPerDevice: 2,
      maxOpenSessionsPerInstance: 3,
    };
    const { store } = await open(":memory:", limits);
    const [a, b] = [store(), store()];
    const hw = key().hardwareId;
    await a.collect({ hardwareId: hw, sessionId: crypto.randomUUID() }, delta(1, "x"));
    await b.collect({ hardwareId: hw, sessionId: crypto.randomUUID() }, delta(1, "x"));
    await expect(
      a.collect({ hardwareId: hw, sessionId: crypto.randomUUID() }, delta(1, "x")),
    ).rejects.toMatchObject({ rawMessage: /^max_open_sessions_per_device: / });
    await b.collect(key(), delta(1, "x"));
    await expect(a.collect(key(), delta(1, "x"))).rejects.toMatchObject({
      rawMessage: /^max_open_sessions_per_instance: .* 3 open sessions$/,
    });
    expect(await a.stats()).toMatchObject({ openSessions: 3 });
  });

  it("within one process the instance-wide limits are exact: concurrent admissions see each other", async () => {
    const limits = { ...STORE_TEST_LIMITS, maxOpenSessionsPerInstance: 5 };
    const { store } = await open(":memory:", limits);
    const s = store();
    const settled = await Promise.allSettled(
      Array.from({ length: 20 }, () => s.collect(key(), delta(1, "x"))),
    );
    const refused = settled.flatMap((r) => (r.status === "rejected" ? [r.reason] : []));
    expect(settled.filter((r) => r.status === "fulfilled")).toHaveLength(5);
    for (const err of refused) {
      expect(err).toMatchObject({ rawMessage: /^max_open_sessions_per_instance: / });
    }
    expect(await s.stats()).toEqual({ openSessions: 5, bufferedBytes: 5 });
  });

  it("a big hold round-trips: 8 MiB of audio and a 3 MiB screenshot, past Deno KV's value and write limits", async () => {
    const { store } = await open(":memory:", BIG);
    const s = store();
    const k = key();
    // One piece bigger than a whole atomic write (staged), then many small ones (inline).
    const pieces = [pcm(2 * 1024 * 1024 + 17, 1)];
    for (let i = 0; i < 95; i++) pieces.push(pcm(64 * 1024 + i, i + 2));
    const total = pieces.reduce((n, p) => n + p.length, 0);
    expect(total).toBeLessThanOrEqual(BIG.maxAudioBytesPerSession);
    const screenshot = { data: "Q".repeat(3 * 1024 * 1024 + 5), width: 1920, height: 1080 };
    await s.collect(k, delta(1, "look ", { audio: audio(pieces[0] as Uint8Array), screenshot }));
    for (let i = 1; i < pieces.length; i++) {
      expect(
        (await s.collect(k, delta(i + 1, "", { audio: audio(pieces[i] as Uint8Array) }))).outcome,
      ).toBe("accepted");
    }
    expect((await s.stats()).bufferedBytes).toBe(5 + total + screenshot.data.length);
    const turn = await s.commit(k, [delta(0, "here")], "big");
    expect(turn.text).toBe("look here");
    expect(turn.screenshot).toEqual(screenshot);
    expect(turn.audio).toHaveLength(pieces.length);
    expect(turn.audio.every((a, i) => same(a.data, pieces[i]))).toBe(true);
    expect(await s.stats()).toEqual({ openSessions: 0, bufferedBytes: 0 });
  }, 60_000);

  it("a record that cannot fit one atomic write is refused naming Deno KV's limit, and nothing is lost", async () => {
    const limits = {
      ...STORE_TEST_LIMITS,
      maxChunkTextBytes: 1 << 20,
      maxSessionTextBytes: 4 << 20,
    };
    const { store } = await open(":memory:", limits);
    const s = store();
    const k = key();
    await s.collect(k, delta(1, "a".repeat(500_000)));
    await expect(s.collect(k, delta(2, "b".repeat(500_000)))).rejects.toMatchObject({
      code: Code.ResourceExhausted,
      rawMessage: /^deno_kv_atomic_write: /,
    });
    expect((await s.commit(k, [], "t")).text).toBe("a".repeat(500_000));
  });

  it("a restart (a new store, the database reopened) keeps every chunk", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ptt-deno-kv-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, "kv.sqlite3");
    const clock = new ManualClock();
    const k = key();
    const first = await openKv(path);
    const before = createDenoKvStore({ kv: first, limits: BIG, clock });
    await before.collect(k, delta(1, "nothing ", { audio: audio(pcm(100_000, 1)) }));
    await before.collect(k, delta(3, "lost", { audio: audio(pcm(3, 3)) }));
    await before.collect(k, delta(2, "is ", { audio: audio(pcm(200_000, 2)) }));
    await before.close();
    first.close();

    const { store } = await open(path, BIG, clock);
    const after = store();
    expect((await after.collect(k, delta(2, "is "))).outcome).toBe("duplicate");
    expect(await after.stats()).toEqual({ openSessions: 1, bufferedBytes: 15 + 300_003 });
    const turn = await after.commit(k, [], "t");
    expect(turn.text).toBe("nothing is lost");
    const want = [pcm(100_000, 1), pcm(200_000, 2), pcm(3, 3)];
    expect(turn.audio.map((a, i) => same(a.data, want[i]))).toEqual([true, true, true]);
  });

  it("sealed sessions leave no audio behind, and sweep() forgets tombstones past their TTL", async () => {
    const { kv, clock, store } = await open(":memory:", BIG);
    const s = store();
    const k = key();
    await s.collect(k, delta(1, "x", { audio: audio(pcm(70_000, 1)) }));
    await s.commit(k, [], "t");
    await s.close(); // waits for the cleanup that follows the seal
    const left = async () => {
      const keys: unknown[] = [];
      for await (const e of kv.list({ prefix: ["ptt"] })) keys.push(e.key);
      return keys;
    };
    expect((await left()).filter((k) => (k as unknown[])[1] === "b")).toEqual([]);
    clock.advance(BIG.tombstoneTtlMs);
    await store().sweep();
    // Only the device (no open session left in it) and the (now zero) gauges remain.
    expect((await left()).map((k) => (k as unknown[])[1]).sort()).toEqual(["d", "n", "n"]);
  });

  it("only a COMMIT reads the hold's audio and screenshot back (the engine's payloads hint)", async () => {
    const { kv, store } = await open(":memory:", BIG);
    const blobReads: string[] = [];
    // The real database, with its range reads of blobs ("b" keys) noted.
    const watched: DenoKv = {
      get: (k) => kv.get(k),
      atomic: () => kv.atomic(),
      list(selector) {
        if (selector.prefix[1] === "b") blobReads.push(String(selector.prefix[3]));
        return kv.list(selector as never);
      },
    };
    const s = store(watched);
    const k = key();
    const screenshot = { data: "S".repeat(200_000), width: 4, height: 3 };
    await s.collect(k, delta(1, "a", { audio: audio(pcm(300_000, 1)), screenshot }));
    for (let i = 2; i <= 10; i++) await s.collect(k, delta(i, "b", { audio: audio(pcm(1000, i)) }));
    expect(await s.cancel({ ...k, sessionId: crypto.randomUUID() })).toBe("unknown");
    expect(blobReads).toEqual([]);
    expect((await s.stats()).bufferedBytes).toBe(10 + 300_000 + 9_000 + 200_000);
    const turn = await s.commit(k, [], "t");
    expect(blobReads).toEqual([k.sessionId]);
    expect(turn.screenshot).toEqual(screenshot);
    expect(turn.audio.map((a) => a.data.length)).toEqual([300_000, ...Array(9).fill(1000)]);
    expect(same(turn.audio[0]?.data, pcm(300_000, 1))).toBe(true);
  });
});
