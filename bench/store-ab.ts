/**
 * In-process COLLECT of the memory store, A/B between two trees in one process:
 *
 *   node --expose-gc --import tsx bench/store-ab.ts <rev> [<rev> | .]
 *
 * Each side is a git revision (its `src` extracted to a temporary directory that links this
 * repo's node_modules) or `.` (this working tree, the default second side). A side's store is
 * the engine over the memory driver (src/core/drivers/memory.ts) or, before the engine
 * (1c15e89^), src/core/stores/memory-store.ts: `e53b3ad` against `1c15e89^` is the engine's
 * regression, `HEAD` against `.` a change before it is committed.
 *
 * Shape: 10,000 holds on 10,000 devices, 20 DELTA chunks each, interleaved (the `holds` line of
 * store-collect.ts). Each run is timed in CPU time (user + system: a busy neighbour steals
 * wall time, less CPU time), after a GC; rounds alternate which side goes first. Prints each
 * side's median COLLECTs per CPU second and B ÷ A as the ratio of the medians (and the median
 * of the per-round ratios). BENCH_ROUNDS (10), BENCH_HOLDS (10,000), BENCH_CHUNKS (20).
 */

import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 10);
const HOLDS = Number(process.env.BENCH_HOLDS ?? 10_000);
const CHUNKS = Number(process.env.BENCH_CHUNKS ?? 20);
const repo = resolve(import.meta.dirname, "..");

interface Store {
  collect(key: { hardwareId: string; sessionId: string }, chunk: unknown): Promise<unknown>;
  close(): Promise<void>;
}

interface Side {
  name: string;
  open(): Store;
  delta: number;
}

/** The tree of `rev`: this one for ".", else its src extracted beside a link to node_modules. */
function treeOf(rev: string): string {
  if (rev === ".") return repo;
  const dir = mkdtempSync(join(tmpdir(), "ptt-store-ab-"));
  const tar = execFileSync("git", ["-C", repo, "archive", rev, "src", "package.json"]);
  execFileSync("tar", ["-x", "-C", dir], { input: tar });
  symlinkSync(join(repo, "node_modules"), join(dir, "node_modules"));
  return dir;
}

async function load(rev: string): Promise<Side> {
  const dir = treeOf(rev);
  const at = (p: string) => pathToFileURL(join(dir, p)).href;
  const engine = join(dir, "src/core/drivers/memory.ts");
  const storeFile = existsSync(engine) ? engine : join(dir, "src/core/stores/memory-store.ts");
  const { createMemoryStore } = await import(pathToFileURL(storeFile).href);
  const { DEFAULT_LIMITS } = await import(at("src/core/limits.ts"));
  const { systemClock } = await import(at("src/core/system-clock.ts"));
  const { ChunkMode } = await import(at("src/gen/streaming_pb.ts"));
  const limits = { ...DEFAULT_LIMITS, maxChunksPerSession: 1e9 };
  return {
    name: rev,
    open: () => createMemoryStore({ limits, clock: systemClock }) as Store,
    delta: ChunkMode.DELTA,
  };
}

function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

/** COLLECTs per CPU second over HOLDS × CHUNKS. */
async function holds(side: Side): Promise<number> {
  (globalThis as { gc?: () => void }).gc?.();
  const store = side.open();
  const keys = Array.from({ length: HOLDS }, (_, i) => ({
    hardwareId: `dev-${i}`,
    sessionId: crypto.randomUUID(),
  }));
  const t = cpuMs();
  for (let c = 1; c <= CHUNKS; c++) {
    for (const key of keys) await store.collect(key, { seq: c, mode: side.delta, text: "word " });
  }
  const ms = cpuMs() - t;
  await store.close();
  return ((HOLDS * CHUNKS) / ms) * 1000;
}

function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  const mid = s.length / 2;
  return s.length % 2
    ? (s[Math.floor(mid)] as number)
    : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

const [revA, revB = "."] = process.argv.slice(2);
if (!revA) {
  console.error("usage: node --expose-gc --import tsx bench/store-ab.ts <rev> [<rev> | .]");
  process.exit(2);
}
if (!(globalThis as { gc?: unknown }).gc)
  console.error("note: without --expose-gc no GC runs before each run");
const a = await load(revA);
const b = await load(revB);
await holds(a); // warm-up of both, in the order of the first round
await holds(b);
const rates = { a: [] as number[], b: [] as number[] };
for (let r = 0; r < ROUNDS; r++) {
  const order = r % 2 === 0 ? ([a, b] as const) : ([b, a] as const);
  for (const side of order) (side === a ? rates.a : rates.b).push(await holds(side));
  const i = rates.a.length - 1;
  console.error(
    `round ${r + 1}: ${a.name} ${Math.round(rates.a[i] as number)}, ${b.name} ${Math.round(rates.b[i] as number)}, ratio ${((rates.b[i] as number) / (rates.a[i] as number)).toFixed(3)}`,
  );
}
const perRound = rates.a.map((x, i) => (rates.b[i] as number) / x);
console.log(
  JSON.stringify({
    shape: `${HOLDS} holds x ${CHUNKS} DELTA chunks, COLLECTs per CPU second`,
    [a.name]: Math.round(median(rates.a)),
    [b.name]: Math.round(median(rates.b)),
    ratioOfMedians: Number((median(rates.b) / median(rates.a)).toFixed(3)),
    medianOfRatios: Number(median(perRound).toFixed(3)),
    roundRatios: perRound.map((x) => Number(x.toFixed(3))),
  }),
);
