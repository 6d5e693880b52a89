import { describe, expect, it } from "vitest";
import { createMemoryStore } from "../../src/core/drivers/memory.js";
import { ChunkMode } from "../../src/gen/streaming_pb.js";
import { STORE_TEST_LIMITS, testStore } from "../contract/store.js";
import { ManualClock } from "../support/manual-clock.js";

testStore("memory", ({ limits, clock }) => createMemoryStore({ limits, clock }));

// Memory-only: the background sweeper (other stores reclaim in their own way).
describe("memory store sweeper", () => {
  const key = { hardwareId: "dev-1", sessionId: crypto.randomUUID() };
  const chunk = { seq: 1, mode: ChunkMode.UNSPECIFIED, text: "hi" };

  it("is armed only while something is stored, reclaims on its own, and close() disarms it", async () => {
    const clock = new ManualClock();
    const expired: number[] = [];
    const limits = STORE_TEST_LIMITS;
    const store = createMemoryStore({ limits, clock, onExpired: (n) => expired.push(n) });
    expect(clock.pendingTimers).toBe(0);
    await store.collect(key, chunk);
    expect(clock.pendingTimers).toBe(1);
    // The timer is set for the session's deadline (plus a little slack to batch expiries).
    await clock.tickAsync(limits.idleTtlMs + 1000);
    expect(expired).toEqual([1]);
    expect((await store.stats()).openSessions).toBe(0);
    // The tombstone keeps it armed until it is forgotten; then no timer is left.
    await clock.tickAsync(limits.tombstoneTtlMs + limits.idleTtlMs);
    expect(clock.pendingTimers).toBe(0);
    await store.collect({ ...key, sessionId: crypto.randomUUID() }, chunk);
    expect(clock.pendingTimers).toBe(1);
    await store.close();
    expect(clock.pendingTimers).toBe(0);
  });
});
