import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { JournalEntry } from "../../src/core/ports.js";
import { AlarmClock } from "../../src/runtimes/cloudflare/alarm-clock.js";
import { createStorageJournal } from "../../src/runtimes/cloudflare/storage-journal.js";
import { deviceStub, newDevice } from "./helpers.js";

const TTL = 60_000;

// The journal over a device object's real storage (its alarm left out: nothing expires here).
describe("the storage journal's reader", () => {
  it("a reader paused in a backlog gets what the writer appended and its end meanwhile", async () => {
    await runInDurableObject(deviceStub(newDevice("journal-read")), async (_object, state) => {
      const clock = new AlarmClock({ setAlarm: async () => {}, deleteAlarm: async () => {} });
      const journal = createStorageJournal(state.storage.kv, clock, 1 << 20);
      const key = { hardwareId: "journal-read", sessionId: crypto.randomUUID() };
      await journal.open(key, "turn-1", TTL);
      for (const i of [0, 1, 2]) await journal.append(key, i, new Uint8Array([i]), TTL);
      const reader = journal
        .read(key, 0, new AbortController().signal, 5000)
        [Symbol.asyncIterator]();
      const got: JournalEntry[] = [];
      const first = await reader.next();
      if (!first.done) got.push(first.value);
      // The reader holds its first page (frames 0-2); the reply goes on and ends meanwhile.
      for (const i of [3, 4]) await journal.append(key, i, new Uint8Array([i]), TTL);
      await journal.end(key, { code: 0, message: "RESPONSE_COMPLETED" }, TTL);
      for (let r = await reader.next(); !r.done; r = await reader.next()) got.push(r.value);
      // Before, the reader judged by the head it read before the page: no end, no writer,
      // and stopped at frame 2 (the resume then ended UNAVAILABLE).
      expect(got.map((e) => (e.kind === "frame" ? e.index : e.end.message))).toEqual([
        0,
        1,
        2,
        3,
        4,
        "RESPONSE_COMPLETED",
      ]);
    });
  });
});
