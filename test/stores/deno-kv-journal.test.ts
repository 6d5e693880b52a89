import { openKv } from "@deno/kv";
import { afterAll, describe, expect, it } from "vitest";
import type { JournalEntry, ReplyJournal } from "../../src/core/ports.js";
import type { DenoKv } from "../../src/drivers/deno-kv/deno-kv-api.js";
import { createDenoKvJournal } from "../../src/drivers/deno-kv/deno-kv-journal.js";

const enc = new TextEncoder();
const dec = new TextDecoder();

function key() {
  return {
    hardwareId: `kvj-${Math.random().toString(36).slice(2, 8)}`,
    sessionId: crypto.randomUUID(),
  };
}

async function readAll(j: ReplyJournal, k: ReturnType<typeof key>, from: number, idleMs = 2000) {
  const out: JournalEntry[] = [];
  for await (const e of j.read(k, from, new AbortController().signal, idleMs)) out.push(e);
  return out;
}

async function keysUnder(kv: DenoKv, k: ReturnType<typeof key>) {
  const out = [];
  for await (const e of kv.list({ prefix: ["ptt", "r", k.hardwareId, k.sessionId] }))
    out.push(e.key);
  return out;
}

const text = (e: JournalEntry) => (e.kind === "frame" ? dec.decode(e.bytes) : `end ${e.end.code}`);

// "": @deno/kv's in-memory KV; ":memory:": Deno's SQLite backend (its 64 KiB value limit).
for (const [name, path] of [
  ["in-memory", ""],
  ["sqlite", ":memory:"],
] as const) {
  describe(`deno-kv reply journal (${name})`, async () => {
    const kv = await openKv(path);
    const journal = createDenoKvJournal({ kv, pollMs: 10 });
    afterAll(() => kv.close());

    it("a writer whose journal another process opened again writes nothing into the new one", async () => {
      const k = key();
      await journal.open(k, "turn-a", 5000);
      await journal.append(k, 0, enc.encode("a0"), 5000);
      // Another process (another journal over the same database) opens the reply anew.
      const other = createDenoKvJournal({ kv });
      await other.open(k, "turn-b", 5000);
      await other.append(k, 0, enc.encode("b0"), 5000);
      // The first writer's next frame is refused (its head changed under it), never merged.
      await expect(journal.append(k, 1, enc.encode("a1"), 5000)).rejects.toThrow(/did not land/);
      expect(await other.head(k)).toEqual({ turnId: "turn-b", frames: 1, end: undefined });
      await other.end(k, { code: 0, message: "RESPONSE_COMPLETED" }, 5000);
      expect((await readAll(other, k, 0)).map(text)).toEqual(["b0", "end 0"]);
    });

    it("replays from a cursor to the end; frames over one KV value come back whole", async () => {
      const k = key();
      const big = enc.encode("x".repeat(150_000));
      await journal.open(k, "turn-1", 5000);
      for (const [i, f] of [enc.encode("zero"), big, enc.encode("two")].entries()) {
        await journal.append(k, i, f, 5000);
      }
      await journal.end(k, { code: 0, message: "RESPONSE_COMPLETED" }, 5000);
      expect(await journal.head(k)).toEqual({
        turnId: "turn-1",
        frames: 3,
        end: { code: 0, message: "RESPONSE_COMPLETED" },
      });
      const all = await readAll(journal, k, 0);
      expect(all.map((e) => (e.kind === "frame" ? e.index : -1))).toEqual([0, 1, 2, -1]);
      expect(all[1]?.kind === "frame" && all[1].bytes.length).toBe(big.length);
      expect((await readAll(journal, k, 2)).map(text)).toEqual(["two", "end 0"]);
      // A second journal over the same database (another process) reads the same.
      const other = createDenoKvJournal({ kv });
      expect((await readAll(other, k, 0)).map(text).at(-1)).toBe("end 0");
      expect(await journal.head(key())).toBeUndefined();
    });

    it("follows live: a reader that started first gets each frame once, then the end", async () => {
      const k = key();
      await journal.open(k, "turn-2", 5000);
      await journal.append(k, 0, enc.encode("a"), 5000);
      const reading = readAll(createDenoKvJournal({ kv, pollMs: 10 }), k, 0);
      for (const [i, t] of ["b", "c", "d"].entries()) {
        await new Promise((r) => setTimeout(r, 30));
        await journal.append(k, i + 1, enc.encode(t), 5000);
      }
      await journal.end(k, { code: 1, message: "stopped" }, 5000);
      expect((await reading).map(text)).toEqual(["a", "b", "c", "d", "end 1"]);
    });

    it("a journal that stops growing: the reader returns without an end after idleMs", async () => {
      const k = key();
      await journal.open(k, "turn-3", 5000);
      await journal.append(k, 0, enc.encode("only"), 5000);
      expect((await readAll(journal, k, 0, 200)).map(text)).toEqual(["only"]);
    });

    it("the window after the end: every key of the reply is gone", async () => {
      const k = key();
      await journal.open(k, "turn-4", 300);
      await journal.append(k, 0, enc.encode("a"), 300);
      await journal.append(k, 1, enc.encode("b"), 300);
      // Frames written early live the window past the end, not past their own write.
      await new Promise((r) => setTimeout(r, 200));
      await journal.end(k, { code: 0, message: "done" }, 300);
      await new Promise((r) => setTimeout(r, 200));
      expect((await readAll(journal, k, 0)).map(text)).toEqual(["a", "b", "end 0"]);
      await new Promise((r) => setTimeout(r, 400));
      expect(await journal.head(k)).toBeUndefined();
      expect(await readAll(journal, k, 0)).toEqual([]);
      // The keys themselves: @deno/kv's in-memory KV drops them at once; Deno's SQLite backend
      // reclaims expired keys in its own time.
      if (path === "") expect(await keysUnder(kv, k)).toEqual([]);
    });
  });
}
