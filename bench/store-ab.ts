/**
 * In-process COLLECT of the session store, A/B between two trees in one process:
 *
 *   node --expose-gc --import tsx bench/store-ab.ts <rev> [<rev> | .]
 *   BENCH_STORE=redis node --expose-gc --import tsx bench/store-ab.ts <rev> [<rev> | .]
 *
 * Each side is a git revision (its `src` extracted to a temporary directory that links this
 * repo's node_modules) or `.` (this working tree, the default second side).
 *
 * Memory (the default): the engine over the memory driver (src/core/drivers/memory.ts) or,
 * before the engine (1c15e89^), src/core/stores/memory-store.ts: `.` against `1c15e89^` is the
 * engine's regression, `HEAD` against `.` a change before it is committed. 10,000 holds on
 * 10,000 devices, 20 DELTA chunks each, interleaved, one at a time (the `holds` line of
 * store-collect.ts).
 *
 * Redis (BENCH_STORE=redis): the engine over each tree's Redis driver on a redis-server the
 * bench starts (loopback, persistence off), each side its own connection, each run its own key
 * prefix; 100 COLLECTs in flight, each loop its own device and session, the same unsequenced
 * chunk (the shape of redis.ts, without HTTP/2), 200,000 COLLECTs a run. Prints also what
 * redis-server spent per COLLECT (INFO cpu).
 *
 * Each run is timed in this process's CPU time (user + system: a busy neighbour steals wall
 * time, much less CPU time), after a GC; rounds alternate which side goes first. Prints each
 * side's median COLLECTs per CPU second and B ÷ A as the ratio of the medians (and the median
 * of the per-round ratios). BENCH_ROUNDS (10), BENCH_HOLDS (10,000), BENCH_CHUNKS (20).
 */

import { existsSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { createClient } from "@redis/client";
import { type RedisServer, startRedisServer } from "../test/support/redis-server.js";
import { treeOf } from "./tree.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 10);
const HOLDS = Number(process.env.BENCH_HOLDS ?? 10_000);
const CHUNKS = Number(process.env.BENCH_CHUNKS ?? 20);
const IN_FLIGHT = 100;

interface Store {
  collect(key: { hardwareId: string; sessionId: string }, chunk: unknown): Promise<unknown>;
  close(): Promise<void>;
}

interface Result {
  /** COLLECTs per CPU second of this process. */
  perCpuSecond: number;
  /** redis-server's CPU per COLLECT, µs (0 on memory). */
  redisUs: number;
}

interface Side {
  name: string;
  run(): Promise<Result>;
  close(): Promise<void>;
}

function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

/** redis-server's user + system CPU time (ms); 0 without Redis. */
let redisCpuMs = async () => 0;

/** Times `work` (n COLLECTs) in CPU time, after a GC. */
async function timed(n: number, work: () => Promise<void>): Promise<Result> {
  (globalThis as { gc?: () => void }).gc?.();
  const r = await redisCpuMs();
  const t = cpuMs();
  await work();
  const ms = cpuMs() - t;
  const redisMs = (await redisCpuMs()) - r;
  return { perCpuSecond: (n / ms) * 1000, redisUs: (redisMs * 1000) / n };
}

async function load(rev: string, redisUrl: string | undefined): Promise<Side> {
  const dir = treeOf(rev);
  const at = (p: string) => pathToFileURL(join(dir, p)).href;
  const { DEFAULT_LIMITS } = await import(at("src/core/limits.ts"));
  const { systemClock: clock } = await import(at("src/core/system-clock.ts"));
  const { ChunkMode } = await import(at("src/gen/streaming_pb.ts"));
  const limits = { ...DEFAULT_LIMITS, maxChunksPerSession: 1e9 };
  if (redisUrl) return loadRedis(rev, at, redisUrl, { limits, clock }, ChunkMode.UNSPECIFIED);
  const engine = join(dir, "src/core/drivers/memory.ts");
  const storeFile = existsSync(engine) ? engine : join(dir, "src/core/stores/memory-store.ts");
  const { createMemoryStore } = await import(pathToFileURL(storeFile).href);
  return {
    name: rev,
    run: () => holds(createMemoryStore({ limits, clock }) as Store, ChunkMode.DELTA),
    close: async () => {},
  };
}

/** HOLDS × CHUNKS DELTA chunks, interleaved, one at a time. */
async function holds(store: Store, delta: number): Promise<Result> {
  const keys = Array.from({ length: HOLDS }, (_, i) => ({
    hardwareId: `dev-${i}`,
    sessionId: crypto.randomUUID(),
  }));
  const result = await timed(HOLDS * CHUNKS, async () => {
    for (let c = 1; c <= CHUNKS; c++) {
      for (const key of keys) await store.collect(key, { seq: c, mode: delta, text: "word " });
    }
  });
  await store.close();
  return result;
}

let prefixes = 0;

/** The engine over a tree's Redis driver, on its own connection; a key prefix per run. */
async function loadRedis(
  rev: string,
  at: (p: string) => string,
  url: string,
  deps: { limits: object; clock: object },
  unspecified: number,
): Promise<Side> {
  const { silentLogger } = await import(at("src/core/ptt-core.ts"));
  const { createSessionStore } = await import(at("src/core/session-engine.ts"));
  const { openRedisConnections } = await import(at("src/drivers/redis/redis-connection.ts"));
  const { createRedisDriver } = await import(at("src/drivers/redis/redis-driver.ts"));
  const conn = openRedisConnections({ url, commandTimeoutMs: 5000, logger: silentLogger });
  await conn.ready(10_000);
  return {
    name: rev,
    async run() {
      const driver = createRedisDriver({
        client: conn.client,
        prefix: `ab-${++prefixes}`,
        logger: silentLogger,
      });
      const store = createSessionStore({ ...deps, driver }) as Store;
      const each = Math.ceil((HOLDS * CHUNKS) / IN_FLIGHT);
      const keys = Array.from({ length: IN_FLIGHT }, (_, i) => ({
        hardwareId: `dev-${i}`,
        sessionId: crypto.randomUUID(),
      }));
      const chunk = { seq: 0, mode: unspecified, text: "hello world" };
      const result = await timed(each * IN_FLIGHT, async () => {
        await Promise.all(
          keys.map(async (key) => {
            for (let i = 0; i < each; i++) await store.collect(key, chunk);
          }),
        );
      });
      await store.close();
      return result;
    },
    close: () => conn.close(),
  };
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
let redis: RedisServer | undefined;
let closeInfo = async () => {};
if (process.env.BENCH_STORE === "redis") {
  redis = await startRedisServer();
  const info = createClient({ url: redis.url });
  await info.connect();
  redisCpuMs = async () => {
    const text = await info.info("cpu");
    const field = (name: string) => Number(new RegExp(`${name}:([\\d.]+)`).exec(text)?.[1] ?? 0);
    return (field("used_cpu_user") + field("used_cpu_sys")) * 1000;
  };
  closeInfo = async () => void (await info.close());
}
const a = await load(revA, redis?.url);
const b = await load(revB, redis?.url);
await a.run(); // warm-up of both, in the order of the first round
await b.run();
const runs = { a: [] as Result[], b: [] as Result[] };
for (let r = 0; r < ROUNDS; r++) {
  const order = r % 2 === 0 ? ([a, b] as const) : ([b, a] as const);
  for (const side of order) (side === a ? runs.a : runs.b).push(await side.run());
  const [x, y] = [runs.a.at(-1) as Result, runs.b.at(-1) as Result];
  const show = (s: Side, v: Result) =>
    `${s.name} ${Math.round(v.perCpuSecond)}${redis ? ` (redis ${v.redisUs.toFixed(1)} µs)` : ""}`;
  console.error(
    `round ${r + 1}: ${show(a, x)}, ${show(b, y)}, ratio ${(y.perCpuSecond / x.perCpuSecond).toFixed(3)}`,
  );
}
await a.close();
await b.close();
await closeInfo();
await redis?.close();
const rate = (xs: Result[]) => xs.map((x) => x.perCpuSecond);
const perRound = runs.a.map((x, i) => (runs.b[i] as Result).perCpuSecond / x.perCpuSecond);
console.log(
  JSON.stringify({
    shape: redis
      ? `redis: ${IN_FLIGHT} in flight over as many devices, ${HOLDS * CHUNKS} COLLECTs, per CPU second of this process`
      : `${HOLDS} holds x ${CHUNKS} DELTA chunks, COLLECTs per CPU second`,
    [a.name]: Math.round(median(rate(runs.a))),
    [b.name]: Math.round(median(rate(runs.b))),
    ...(redis
      ? {
          redisUsPerCollect: {
            [a.name]: Number(median(runs.a.map((x) => x.redisUs)).toFixed(1)),
            [b.name]: Number(median(runs.b.map((x) => x.redisUs)).toFixed(1)),
          },
        }
      : {}),
    ratioOfMedians: Number((median(rate(runs.b)) / median(rate(runs.a))).toFixed(3)),
    medianOfRatios: Number(median(perRound).toFixed(3)),
    roundRatios: perRound.map((x) => Number(x.toFixed(3))),
  }),
);
