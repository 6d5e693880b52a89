import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import {
  createMemoryStore,
  type JournalEntry,
  type RecordJournal,
} from "../../src/core/drivers/memory.js";
import { ChunkMode } from "../../src/gen/streaming_pb.js";
import { STORE_TEST_LIMITS, testStore } from "../contract/store.js";
import { ManualClock } from "../support/manual-clock.js";

/** A journal over a Map that stores copies, as a Durable Object's KV stores serialized records. */
function mapJournal(map = new Map<string, JournalEntry>()): RecordJournal & { map: typeof map } {
  return {
    map,
    load: () => [...map.entries()].map(([k, r]) => [k, structuredClone(r)] as const),
    put: (k, r) => void map.set(k, structuredClone(r)),
    delete: (k) => void map.delete(k),
  };
}

testStore("memory+journal", ({ limits, clock }) =>
  createMemoryStore({ limits, clock, journal: mapJournal() }),
);

describe("journaled memory store: rebuilt after a restart", () => {
  const limits = STORE_TEST_LIMITS;
  const key = () => ({ hardwareId: "dev-j", sessionId: crypto.randomUUID() });
  const delta = (seq: number, text: string) => ({ seq, mode: ChunkMode.DELTA, text });

  it("an open hold survives: the new store commits every chunk", async () => {
    const clock = new ManualClock();
    const journal = mapJournal();
    const k = key();
    const before = createMemoryStore({ limits, clock, journal });
    await before.collect(k, delta(1, "hello "));
    await before.collect(k, delta(3, "again"));
    await before.collect(k, delta(2, "there "));
    const after = createMemoryStore({ limits, clock, journal });
    expect((await after.collect(k, delta(2, "there "))).outcome).toBe("duplicate");
    const turn = await after.commit(k, [], "t1");
    expect(turn.text).toBe("hello there again");
    expect(journal.map.get(`${k.hardwareId}\n${k.sessionId}`)?.record.state).toBe("committed");
  });

  it("tombstones survive too, and expiry counts from the original times", async () => {
    const clock = new ManualClock();
    const journal = mapJournal();
    const committed = key();
    const idle = key();
    const before = createMemoryStore({ limits, clock, journal });
    await before.collect(committed, delta(1, "x"));
    await before.commit(committed, [], "t1");
    await before.collect(idle, delta(1, "y"));
    clock.advance(limits.idleTtlMs);
    const after = createMemoryStore({ limits, clock, journal });
    await expect(after.commit(committed, [], "t2")).rejects.toMatchObject({
      rawMessage: `session ${committed.sessionId} is already committed`,
    });
    await expect(after.commit(idle, [], "t3")).rejects.toMatchObject({
      rawMessage: `session ${idle.sessionId} expired: its chunks expired after ${limits.idleTtlMs / 1000} s idle`,
    });
  });

  it("forgotten records leave the journal", async () => {
    const clock = new ManualClock();
    const journal = mapJournal();
    const store = createMemoryStore({ limits, clock, journal });
    await store.collect(key(), delta(1, "x"));
    await clock.tickAsync(limits.idleTtlMs + limits.tombstoneTtlMs + 2000);
    expect(journal.map.size).toBe(0);
  });

  it("a journal write that fails changes nothing and answers UNAVAILABLE", async () => {
    const clock = new ManualClock();
    const journal = mapJournal();
    // Like SQLite-backed Durable Object storage, refuse values over a size.
    const capped: RecordJournal = {
      ...journal,
      put: (k, r) => {
        const { record } = r;
        const audio =
          record.state === "open" ? record.audio.reduce((n, p) => n + p.audio.data.length, 0) : 0;
        if (audio > 1500) throw new Error("SQLITE_TOOBIG");
        journal.put(k, r);
      },
    };
    const store = createMemoryStore({
      limits: { ...limits, maxAudioBytesPerSession: 1_000_000 },
      clock,
      journal: capped,
    });
    const k = key();
    const audio = (n: number) => ({
      data: new Uint8Array(n),
      encoding: "pcm_s16le",
      sampleRate: 16000,
      channels: 1,
    });
    await store.collect(k, { ...delta(1, "kept "), audio: audio(1000) });
    await expect(
      store.collect(k, { ...delta(2, "refused "), audio: audio(1000) }),
    ).rejects.toMatchObject({
      code: Code.Unavailable,
    });
    expect((await store.stats()).bufferedBytes).toBe(5 + 1000);
    // The refused chunk is not stored: its seq is new again, and the turn lacks it.
    expect((await store.collect(k, delta(2, "again"))).outcome).toBe("accepted");
    const turn = await store.commit(k, [], "t");
    expect(turn.text).toBe("kept again");
    expect(turn.audio.map((a) => a.data.length)).toEqual([1000]);
  });
});
