import { describe, expect, it } from "vitest";
import { createInProcessMemory } from "../../src/core/memory/in-process-memory.js";
import { appendBounded, turnsOf } from "../../src/core/memory/turns.js";
import { ManualClock } from "../support/manual-clock.js";

const bounds = { maxTurns: 3, maxBytes: 100, ttlMs: 1000 };
const turn = (n: number, extra = "") => ({ user: `u${n}${extra}`, assistant: `a${n}` });

describe("appendBounded", () => {
  it("drops the oldest turns past the turn bound", () => {
    let turns = [turn(1)];
    for (let n = 2; n <= 5; n++) turns = appendBounded(turns, turn(n), bounds);
    expect(turns).toEqual([turn(3), turn(4), turn(5)]);
  });

  it("drops the oldest turns past the byte bound (UTF-8 bytes)", () => {
    const big = { user: "é".repeat(30), assistant: "" }; // 60 bytes
    expect(appendBounded([big], big, bounds)).toEqual([big]);
    expect(appendBounded([], { user: "x".repeat(101), assistant: "" }, bounds)).toEqual([]);
  });

  it("reads only well-formed turns back from storage", () => {
    expect(turnsOf([turn(1), { user: 1 }, null, "x"])).toEqual([turn(1)]);
    expect(turnsOf({ user: "a" })).toEqual([]);
  });
});

describe("in-process memory", () => {
  it("keeps each device's turns apart, bounded, and forgets on request", async () => {
    const memory = createInProcessMemory({ bounds, clock: new ManualClock() });
    for (let n = 1; n <= 4; n++) await memory.remember("a", turn(n));
    await memory.remember("b", turn(9));
    expect(await memory.recall("a")).toEqual([turn(2), turn(3), turn(4)]);
    expect(await memory.recall("b")).toEqual([turn(9)]);
    await memory.forget("a");
    expect(await memory.recall("a")).toEqual([]);
    expect(await memory.recall("b")).toEqual([turn(9)]);
  });

  it("forgets a device idle for its TTL", async () => {
    const clock = new ManualClock();
    const memory = createInProcessMemory({ bounds, clock });
    await memory.remember("a", turn(1));
    clock.advance(999);
    expect(await memory.recall("a")).toEqual([turn(1)]);
    clock.advance(1);
    expect(await memory.recall("a")).toEqual([]);
  });

  it("remembers at most maxDevices devices, the least recently used going first", async () => {
    const memory = createInProcessMemory({ bounds, clock: new ManualClock(), maxDevices: 2 });
    await memory.remember("a", turn(1));
    await memory.remember("b", turn(2));
    await memory.remember("a", turn(3));
    await memory.remember("c", turn(4));
    expect(await memory.recall("b")).toEqual([]);
    expect(await memory.recall("a")).toEqual([turn(1), turn(3)]);
  });

  it("remembers nothing with 0 turns", async () => {
    const memory = createInProcessMemory({
      bounds: { ...bounds, maxTurns: 0 },
      clock: new ManualClock(),
    });
    await memory.remember("a", turn(1));
    expect(await memory.recall("a")).toEqual([]);
  });
});
