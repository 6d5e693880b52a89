// COLLECT with PTT_STORE=redis://… vs the memory store, side by side in one run (Node, gRPC):
// acks/s with 100 calls in flight over 100 devices, and the one-call-at-a-time ack p50. Part of
// `npm run bench`; alone: `node --import tsx bench/redis.ts`.
import type { ClientHttp2Session } from "node:http2";
import { startRedisServer } from "../test/support/redis-server.js";
import { collectReq, collectRoundTrips, framed, grpcCall, h2session } from "./clients.js";
import { percentile } from "./h2load.js";
import { type Server, startServer } from "./proc.js";

const CONNECTIONS = 10;
const IN_FLIGHT = 10;

export interface RedisBench {
  /** Median of the rounds, acks/s. */
  memoryAcksPerSec: number;
  redisAcksPerSec: number;
  memoryP50us: number;
  redisP50us: number;
  /** Median of per-block p50 ratios (blocks alternate between the two servers). */
  p50Ratio: number;
  rounds: number;
}

/** Acks/s for `seconds`: IN_FLIGHT loops per connection, each its own device and session. */
export async function acksPerSecond(port: number, seconds: number): Promise<number> {
  const sessions = await Promise.all(Array.from({ length: CONNECTIONS }, () => h2session(port)));
  const until = performance.now() + seconds * 1000;
  let acks = 0;
  const loop = async (s: ClientHttp2Session, n: number) => {
    const body = framed(
      collectReq(`bench-redis-${n}-${Math.random()}`, crypto.randomUUID(), "hello world"),
    );
    while (performance.now() < until) {
      const t = await grpcCall(s, body);
      if (t.trailers["grpc-status"] !== "0") {
        throw new Error(`COLLECT failed: ${JSON.stringify(t.trailers)}`);
      }
      acks++;
    }
  };
  const started = performance.now();
  await Promise.all(
    sessions.flatMap((s, i) =>
      Array.from({ length: IN_FLIGHT }, (_, j) => loop(s, i * IN_FLIGHT + j)),
    ),
  );
  const elapsed = (performance.now() - started) / 1000;
  for (const s of sessions) s.close();
  return Math.round(acks / elapsed);
}

const median = (xs: number[]) =>
  percentile(
    [...xs].sort((a, b) => a - b),
    0.5,
  );

export async function benchRedisVsMemory(options: {
  env: Record<string, string>;
  rounds: number;
  seconds: number;
  rttCalls: number;
  blocks: number;
  log: (msg: string) => void;
}): Promise<RedisBench> {
  const redis = await startRedisServer();
  const servers: Server[] = [];
  try {
    const start = (name: string, env: Record<string, string>) =>
      startServer({
        name,
        runtime: "node",
        script: "bench/servers/ptt-node.ts",
        env: { ...options.env, ...env },
      });
    const memory = await start("ptt/node memory", {});
    servers.push(memory);
    const shared = await start("ptt/node redis", { PTT_STORE: redis.url });
    servers.push(shared);
    const mem: number[] = [];
    const red: number[] = [];
    for (let round = 0; round < options.rounds; round++) {
      mem.push(await acksPerSecond(memory.port, options.seconds));
      red.push(await acksPerSecond(shared.port, options.seconds));
      options.log(
        `redis round ${round + 1}: memory ${mem.at(-1)} acks/s, redis ${red.at(-1)} acks/s`,
      );
    }
    const [sm, sr] = await Promise.all([h2session(memory.port), h2session(shared.port)]);
    const perBlock = Math.max(1, Math.round(options.rttCalls / options.blocks));
    await collectRoundTrips(sm, perBlock);
    await collectRoundTrips(sr, perBlock);
    const poolM: number[] = [];
    const poolR: number[] = [];
    const ratios: number[] = [];
    for (let b = 0; b < options.blocks; b++) {
      const m = await collectRoundTrips(sm, perBlock);
      const r = await collectRoundTrips(sr, perBlock);
      poolM.push(...m);
      poolR.push(...r);
      ratios.push(median(r) / median(m));
    }
    sm.close();
    sr.close();
    const result: RedisBench = {
      memoryAcksPerSec: median(mem),
      redisAcksPerSec: median(red),
      memoryP50us: Math.round(median(poolM)),
      redisP50us: Math.round(median(poolR)),
      p50Ratio: Math.round(median(ratios) * 100) / 100,
      rounds: options.rounds,
    };
    options.log(`redis vs memory: ${JSON.stringify(result)}`);
    return result;
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    await redis.close();
  }
}

export function renderRedis(r: RedisBench): string {
  return [
    `#### COLLECT with Redis vs memory (Node, gRPC; ${CONNECTIONS * IN_FLIGHT} calls in flight over as many devices, median of ${r.rounds} rounds; p50 one call at a time)\n`,
    "| store | acks/s | ack p50 µs |",
    "|---|--:|--:|",
    `| memory | ${r.memoryAcksPerSec} | ${r.memoryP50us} |`,
    `| redis (loopback) | ${r.redisAcksPerSec} | ${r.redisP50us} |`,
    `| redis / memory | ${Math.round((r.redisAcksPerSec / r.memoryAcksPerSec) * 100) / 100} | ${r.p50Ratio} (goal <= 2) |`,
    "",
  ].join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await benchRedisVsMemory({
    env: {
      PTT_MAX_CHUNKS_PER_SESSION: "1000000000",
      PTT_MAX_COLLECTS_PER_SECOND: "1000000000",
      PTT_GRACE_MS: "0",
    },
    rounds: Number(process.env.BENCH_ROUNDS ?? 4),
    seconds: Number(process.env.BENCH_SECONDS ?? 2),
    rttCalls: Number(process.env.BENCH_RTT_CALLS ?? 3000),
    blocks: 15,
    log: (m) => process.stderr.write(`${m}\n`),
  });
  process.stdout.write(renderRedis(r));
}
