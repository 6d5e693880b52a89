/**
 * In-process COLLECT cost of the memory store (no transport): `node --import tsx
 * bench/store-collect.ts`. Three shapes, each timed over several rounds (median):
 * - same: one session, the same unsequenced chunk (the h2load body of run.ts);
 * - holds: 10,000 sessions on 10,000 devices, 20 DELTA chunks each, interleaved;
 * - heap: bytes per idle held session (one chunk each), after GC when --expose-gc is on.
 * Against another revision, the store before the engine (1c15e89^) included, in one process:
 * bench/store-ab.ts.
 */

import { createMemoryStore } from "../src/core/drivers/memory.js";
import { DEFAULT_LIMITS } from "../src/core/limits.js";
import { systemClock } from "../src/core/system-clock.js";
import { ChunkMode } from "../src/gen/streaming_pb.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const limits = { ...DEFAULT_LIMITS, maxChunksPerSession: 1e9 };

function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

async function same(n: number): Promise<number> {
  const store = createMemoryStore({ limits, clock: systemClock });
  const key = { hardwareId: "bench", sessionId: crypto.randomUUID() };
  const chunk = { seq: 0, mode: ChunkMode.UNSPECIFIED, text: "hello world" };
  const t = performance.now();
  for (let i = 0; i < n; i++) await store.collect(key, chunk);
  const ms = performance.now() - t;
  await store.close();
  return (n / ms) * 1000;
}

async function holds(sessions: number, chunks: number): Promise<number> {
  const store = createMemoryStore({ limits, clock: systemClock });
  const keys = Array.from({ length: sessions }, (_, i) => ({
    hardwareId: `dev-${i}`,
    sessionId: crypto.randomUUID(),
  }));
  const t = performance.now();
  for (let c = 1; c <= chunks; c++) {
    for (const key of keys)
      await store.collect(key, { seq: c, mode: ChunkMode.DELTA, text: "word " });
  }
  const ms = performance.now() - t;
  await store.close();
  return ((sessions * chunks) / ms) * 1000;
}

async function heap(sessions: number): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const before = process.memoryUsage().heapUsed;
  const store = createMemoryStore({ limits, clock: systemClock });
  for (let i = 0; i < sessions; i++) {
    await store.collect(
      { hardwareId: `heap-${i}`, sessionId: crypto.randomUUID() },
      { seq: 1, mode: ChunkMode.UNSPECIFIED, text: "hello world" },
    );
  }
  gc?.();
  const per = (process.memoryUsage().heapUsed - before) / sessions;
  await store.close();
  return per;
}

const results = { same: [] as number[], holds: [] as number[] };
await same(50_000); // warm-up
for (let r = 0; r < ROUNDS; r++) {
  results.same.push(await same(200_000));
  results.holds.push(await holds(10_000, 20));
}
const perSession = await heap(10_000);
console.log(
  JSON.stringify({
    sameSessionCollectsPerSec: Math.round(median(results.same)),
    tenThousandHoldsCollectsPerSec: Math.round(median(results.holds)),
    heapBytesPerIdleSession: Math.round(perSession),
  }),
);
