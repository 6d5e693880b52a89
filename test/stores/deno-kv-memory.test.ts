import { openKv } from "@deno/kv";
import { describe, expect, it } from "vitest";
import { createDenoKvMemory } from "../../src/core/memory/deno-kv-memory.js";
import { ManualClock } from "../support/manual-clock.js";

const bounds = { maxTurns: 2, maxBytes: 1000, ttlMs: 1000 };
const turn = (n: number) => ({ user: `u${n}`, assistant: `a${n}` });

describe("Deno KV conversation memory (@deno/kv, in memory)", () => {
  it("keeps devices apart, bounded, across two instances sharing the database", async () => {
    const kv = await openKv(":memory:");
    try {
      const clock = new ManualClock();
      const one = createDenoKvMemory({ kv, bounds, clock });
      const two = createDenoKvMemory({ kv, bounds, clock });
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
      clock.advance(1000);
      expect(await one.recall("b")).toEqual([]);
    } finally {
      kv.close();
    }
  });

  it("caps a device's value to what one Deno KV value holds", async () => {
    const kv = await openKv(":memory:");
    try {
      const memory = createDenoKvMemory({
        kv,
        bounds: { maxTurns: 100, maxBytes: 1 << 20, ttlMs: 60_000 },
        clock: new ManualClock(),
      });
      const big = { user: "ü".repeat(8000), assistant: "" }; // 16,000 UTF-8 bytes
      for (let i = 0; i < 5; i++) await memory.remember("a", big);
      expect((await memory.recall("a")).length).toBe(1);
    } finally {
      kv.close();
    }
  });
});
