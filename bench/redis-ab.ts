/**
 * COLLECT with Redis, A/B between two trees in one run, beside the memory store:
 *
 *   node --import tsx bench/redis-ab.ts <rev> [<rev> | .]
 *
 * Three Node servers (bench/servers/ptt-node.ts of each tree, pinned to the server core as in
 * redis.ts): this tree on the memory store, and side A and side B on one redis-server (each
 * its own PTT_REDIS_PREFIX). Acks/s as in redis.ts (100 calls in flight over as many devices),
 * the three servers in a rotating order each round; then one call at a time in blocks, rotated
 * the same way. Prints the medians, B ÷ A (the change) and each side ÷ memory (the goals:
 * acks/s ≥ 0.5, p50 ≤ 2), each ratio the median of its per-round (per-block) ratios. On a
 * shared machine acks/s move with the neighbours' load far more than with a change, so each
 * acks/s run also reports the CPU it cost per ack (user + system time of the server process
 * from /proc, and of redis-server from INFO cpu): the steadier figure of what a change saves.
 * BENCH_ROUNDS (6), BENCH_SECONDS (2), BENCH_RTT_CALLS (3,000 per server), BENCH_BLOCKS (15);
 * BENCH_REDIS_CORE pins redis-server to that core (taskset; unpinned by default).
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createClient } from "@redis/client";
import { startRedisServer } from "../test/support/redis-server.js";
import { collectRoundTrips, h2session } from "./clients.js";
import { percentile } from "./h2load.js";
import { type Server, startServer } from "./proc.js";
import { acksPerSecond } from "./redis.js";
import { treeOf } from "./tree.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 6);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
const RTT_CALLS = Number(process.env.BENCH_RTT_CALLS ?? 3000);
const BLOCKS = Number(process.env.BENCH_BLOCKS ?? 15);
const ENV = {
  PTT_MAX_CHUNKS_PER_SESSION: "1000000000",
  PTT_MAX_COLLECTS_PER_SECOND: "1000000000",
  PTT_GRACE_MS: "0",
};

const median = (xs: number[]) =>
  percentile(
    [...xs].sort((a, b) => a - b),
    0.5,
  );
const r2 = (x: number) => Math.round(x * 100) / 100;

/** User + system CPU time of a process, ms (Linux: /proc, in clock ticks of 10 ms). */
function processCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

const [revA, revB = "."] = process.argv.slice(2);
if (!revA) {
  console.error("usage: node --import tsx bench/redis-ab.ts <rev> [<rev> | .]");
  process.exit(2);
}
const redis = await startRedisServer();
const info = createClient({ url: redis.url });
await info.connect();
/** redis-server's user + system CPU time, ms. */
async function redisCpuMs(): Promise<number> {
  const text = await info.info("cpu");
  const field = (name: string) => Number(new RegExp(`${name}:([\\d.]+)`).exec(text)?.[1] ?? 0);
  return (field("used_cpu_user") + field("used_cpu_sys")) * 1000;
}
if (process.env.BENCH_REDIS_CORE) {
  const pid = /process_id:(\d+)/.exec(await info.info("server"))?.[1] as string;
  execFileSync("taskset", ["-pc", process.env.BENCH_REDIS_CORE, pid], { stdio: "ignore" });
}
const servers: Server[] = [];
try {
  const start = async (name: string, rev: string, env: Record<string, string>) => {
    const s = await startServer({
      name,
      runtime: "node",
      script: join(treeOf(rev), "bench/servers/ptt-node.ts"),
      env: { ...ENV, ...env },
    });
    servers.push(s);
    return s;
  };
  const memory = await start("memory", ".", {});
  const a = await start(revA, revA, { PTT_STORE: redis.url, PTT_REDIS_PREFIX: "a" });
  const b = await start(revB, revB, { PTT_STORE: redis.url, PTT_REDIS_PREFIX: "b" });
  const sides = [memory, a, b];
  const rotated = (i: number) => sides.map((_, j) => sides[(i + j) % sides.length] as Server);

  const acks = new Map<Server, number[]>(sides.map((s) => [s, []]));
  const serverCpu = new Map<Server, number[]>(sides.map((s) => [s, []]));
  const redisCpu = new Map<Server, number[]>(sides.map((s) => [s, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const s of rotated(round)) {
      const pid = s.child.pid as number;
      const [cpu0, redis0] = [processCpuMs(pid), await redisCpuMs()];
      const rate = await acksPerSecond(s.port, SECONDS);
      const n = rate * SECONDS;
      serverCpu.get(s)?.push(((processCpuMs(pid) - cpu0) * 1000) / n);
      redisCpu.get(s)?.push((((await redisCpuMs()) - redis0) * 1000) / n);
      acks.get(s)?.push(rate);
    }
    const line = (s: Server) =>
      `${s.name} ${acks.get(s)?.at(-1)} acks/s (${Math.round(serverCpu.get(s)?.at(-1) ?? 0)} + ${Math.round(redisCpu.get(s)?.at(-1) ?? 0)} µs CPU/ack)`;
    console.error(`round ${round + 1}: ${sides.map(line).join(", ")}`);
  }

  const sessions = new Map(
    await Promise.all(sides.map(async (s) => [s, await h2session(s.port)] as const)),
  );
  const perBlock = Math.max(1, Math.round(RTT_CALLS / BLOCKS));
  const p50s = new Map<Server, number[]>(sides.map((s) => [s, []]));
  for (const s of sides) await collectRoundTrips(sessions.get(s) as never, perBlock); // warm-up
  for (let block = 0; block < BLOCKS; block++) {
    for (const s of rotated(block)) {
      p50s.get(s)?.push(median(await collectRoundTrips(sessions.get(s) as never, perBlock)));
    }
  }
  for (const s of sessions.values()) s.close();

  const ratio = (m: Map<Server, number[]>, x: Server, y: Server) =>
    r2(median((m.get(x) as number[]).map((v, i) => v / ((m.get(y) as number[])[i] as number))));
  const med = (m: Map<Server, number[]>, s: Server) => Math.round(median(m.get(s) as number[]));
  console.log(
    JSON.stringify({
      acksPerSec: Object.fromEntries(sides.map((s) => [s.name, med(acks, s)])),
      ackP50us: Object.fromEntries(sides.map((s) => [s.name, med(p50s, s)])),
      serverCpuUsPerAck: Object.fromEntries(sides.map((s) => [s.name, med(serverCpu, s)])),
      redisCpuUsPerAck: Object.fromEntries(sides.map((s) => [s.name, med(redisCpu, s)])),
      serverCpuBoverA: ratio(serverCpu, b, a),
      acksBoverA: ratio(acks, b, a),
      p50BoverA: ratio(p50s, b, a),
      acksAoverMemory: ratio(acks, a, memory),
      acksBoverMemory: ratio(acks, b, memory),
      p50AoverMemory: ratio(p50s, a, memory),
      p50BoverMemory: ratio(p50s, b, memory),
    }),
  );
} finally {
  await Promise.all(servers.map((s) => s.stop()));
  await info.close();
  await redis.close();
}
