/**
 * A/B of gRPC servers under the bench's COLLECT load: `node --import tsx bench/ab.ts A B …`,
 * each argument a server script (`.ts` runs through tsx, `.js`/`.mjs` on plain node; a path in
 * another worktree compares two versions of the code) that prints "LISTENING <port>" or ptt-edge's
 * start-up line. Every server is started once, pinned as in run.ts; each round runs every server
 * once, the order alternating, with `h2load -c 10 -m 10 -n AB_CALLS` (after one unmeasured run
 * each). Per run: calls/s, and the server's CPU per call (user + system, from /proc, for all the
 * run's calls). Prints both per round and, against the first server, the median over rounds of
 * the ratios within the round. CPU per call moves much less than calls/s on a shared machine.
 *   AB_ROUNDS (7), AB_CALLS (40,000), AB_WARMUP (20,000 calls before a server is measured), AB_FRESH=1: a new process for every run (on this shared
 *   VM a process's CPU per call has been seen to double and stay so for minutes, so one slow
 *   process can decide an A/B), AB_ONE_AT_A_TIME=1: also COLLECT ack and COMMIT → first frame
 *   p50, one call at a time (clients.ts), in alternating blocks.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import type { ClientHttp2Session } from "node:http2";
import { tmpdir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import {
  collectReq,
  collectRoundTrips,
  commitFirstFrames,
  framed,
  h2session,
  STREAM_AUDIO,
} from "./clients.js";
import { percentile } from "./h2load.js";
import { CLIENT_CORE, pinned, type Server, startServer } from "./proc.js";

const ROUNDS = Number(process.env.AB_ROUNDS ?? 7);
const CALLS = Number(process.env.AB_CALLS ?? 40_000);
const ONE_AT_A_TIME = process.env.AB_ONE_AT_A_TIME === "1";
const FRESH = process.env.AB_FRESH === "1";
const WARMUP = Number(process.env.AB_WARMUP ?? 20_000);
const ENV = {
  PTT_MAX_CHUNKS_PER_SESSION: "1000000000",
  PTT_MAX_COLLECTS_PER_SECOND: "1000000000",
  PTT_MAX_COMMITS_PER_MINUTE: "1000000000",
  PTT_GRACE_MS: "0",
};
const BODY = framed(collectReq("bench-load", crypto.randomUUID(), "hello world"));
const TICK_US = 1e6 / 100; // USER_HZ

function cpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) * TICK_US; // utime, stime
}

function run(argv: string[]): Promise<string> {
  const [cmd, ...args] = argv;
  return new Promise((done, fail) =>
    execFile(cmd as string, args, { maxBuffer: 8 << 20, timeout: 300_000 }, (err, out, stderr) =>
      err ? fail(new Error(`${err.message}\n${stderr}`)) : done(out),
    ),
  );
}

async function load(server: Server, bodyFile: string, calls: number) {
  const pid = server.child.pid as number;
  const before = cpuUs(pid);
  const out = await run(
    pinned(CLIENT_CORE, [
      "h2load",
      ...["-c", "10", "-m", "10", "-n", String(calls), "-d", bodyFile],
      ...["-H", "content-type: application/grpc", "-H", "te: trailers"],
      `http://127.0.0.1:${server.port}${STREAM_AUDIO}`,
    ]),
  );
  const cpu = cpuUs(pid) - before;
  const done = /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed/.exec(
    out,
  );
  const rps = /finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out);
  if (!done || !rps) throw new Error(`h2load printed no summary:\n${out}`);
  if (Number(done[2]) > 0) throw new Error(`${server.name}: ${done[2]} calls failed`);
  return { rps: Number(rps[1]), cpuPerCallUs: cpu / Number(done[1]) };
}

const median = (xs: number[]) =>
  percentile(
    [...xs].sort((a, b) => a - b),
    0.5,
  );
const r2 = (x: number) => Math.round(x * 100) / 100;

async function main() {
  const scripts = process.argv.slice(2).map((s) => (isAbsolute(s) ? s : resolve(s)));
  if (scripts.length < 2) throw new Error("usage: bench/ab.ts <server script> <server script> …");
  const start = (i: number) =>
    startServer({
      name: `${String.fromCharCode(65 + i)} ${scripts[i]}`,
      runtime: "node",
      script: scripts[i] as string,
      env: ENV,
    });
  const servers: Server[] = [];
  for (let i = 0; i < scripts.length; i++) servers.push(await start(i));
  const dir = await mkdtemp(join(tmpdir(), "ptt-ab-"));
  const bodyFile = join(dir, "body.bin");
  await writeFile(bodyFile, BODY);
  const warm = (s: Server) => load(s, bodyFile, WARMUP);
  try {
    for (const s of servers) await warm(s);
    const rps: number[][] = servers.map(() => []);
    const cpu: number[][] = servers.map(() => []);
    for (let round = 0; round < ROUNDS; round++) {
      const order = servers.map((_, i) => i);
      if (round % 2 === 1) order.reverse();
      for (const i of order) {
        if (FRESH && round > 0) {
          await servers[i]?.stop();
          servers[i] = await start(i);
          await warm(servers[i] as Server);
        }
        const r = await load(servers[i] as Server, bodyFile, CALLS);
        rps[i]?.push(r.rps);
        cpu[i]?.push(r.cpuPerCallUs);
      }
      const line = servers.map(
        (s, i) => `${s.name.slice(0, 1)} ${rps[i]?.[round]} calls/s ${r2(cpu[i]?.[round] ?? 0)} µs`,
      );
      process.stderr.write(`[ab] round ${round + 1}: ${line.join(" | ")}\n`);
    }
    for (const [i, s] of servers.entries()) {
      const rpsRatio = median((rps[i] ?? []).map((x, k) => x / (rps[0]?.[k] ?? Number.NaN)));
      const cpuRatio = median((cpu[i] ?? []).map((x, k) => x / (cpu[0]?.[k] ?? Number.NaN)));
      console.log(
        `${s.name}: calls/s median ${Math.round(median(rps[i] ?? []))} (×A ${r2(rpsRatio)}, rounds ${(rps[i] ?? []).map(Math.round).join(" ")}); CPU µs/call median ${r2(median(cpu[i] ?? []))} (×A ${r2(cpuRatio)})`,
      );
    }
    if (ONE_AT_A_TIME) await oneAtATime(servers);
  } finally {
    await rm(dir, { recursive: true, force: true });
    for (const s of servers) await s.stop();
  }
}

/** COLLECT ack and COMMIT → first frame p50, one call at a time, blocks alternating. */
async function oneAtATime(servers: Server[]) {
  const sessions: ClientHttp2Session[] = [];
  for (const s of servers) sessions.push(await h2session(s.port));
  const blocks = Number(process.env.AB_BLOCKS ?? 15);
  const ack: number[][] = servers.map(() => []);
  const first: number[][] = servers.map(() => []);
  for (const s of sessions) {
    await collectRoundTrips(s, 100);
    await commitFirstFrames(s, 50);
  }
  for (let b = 0; b < blocks; b++) {
    const order = sessions.map((_, i) => i);
    if (b % 2 === 1) order.reverse();
    for (const i of order) {
      const s = sessions[i] as ClientHttp2Session;
      ack[i]?.push(median(await collectRoundTrips(s, 200)));
      first[i]?.push(median(await commitFirstFrames(s, 100)));
    }
  }
  for (const [i, s] of servers.entries()) {
    const ackRatio = median((ack[i] ?? []).map((x, k) => x / (ack[0]?.[k] ?? Number.NaN)));
    const firstRatio = median((first[i] ?? []).map((x, k) => x / (first[0]?.[k] ?? Number.NaN)));
    console.log(
      `${s.name}: one at a time: COLLECT ack p50 ${Math.round(median(ack[i] ?? []))} µs (×A ${r2(ackRatio)}), COMMIT → first frame p50 ${Math.round(median(first[i] ?? []))} µs (×A ${r2(firstRatio)})`,
    );
  }
  for (const s of sessions) s.close();
}

await main();
