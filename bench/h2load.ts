// Load over gRPC with h2load (Debian's nghttp2-client): calls/s from its summary, p50/p99 from
// its per-request log (h2load itself prints no percentiles).
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CLIENT_CORE, pinned } from "./proc.js";

export interface LoadResult {
  /** Successful calls per second in the measured window. */
  rps: number;
  p50us: number;
  p99us: number;
  calls: number;
  failed: number;
}

export interface LoadOptions {
  port: number;
  path: string;
  body: Uint8Array;
  clients: number;
  streams: number;
  seconds: number;
  warmupSeconds: number;
}

export async function h2load(o: LoadOptions): Promise<LoadResult> {
  const dir = await mkdtemp(join(tmpdir(), "ptt-bench-"));
  try {
    const bodyFile = join(dir, "body.bin");
    const logFile = join(dir, "log.tsv");
    await writeFile(bodyFile, o.body);
    const argv = pinned(CLIENT_CORE, [
      "h2load",
      "-c",
      String(o.clients),
      "-m",
      String(o.streams),
      "-D",
      String(o.seconds),
      `--warm-up-time=${o.warmupSeconds}`,
      "-d",
      bodyFile,
      "-H",
      "content-type: application/grpc",
      "-H",
      "te: trailers",
      `--log-file=${logFile}`,
      `http://127.0.0.1:${o.port}${o.path}`,
    ]);
    const out = await run(argv);
    const done = /requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed/.exec(
      out,
    );
    const rps = /finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out);
    if (!done || !rps) throw new Error(`h2load printed no summary:\n${out}`);
    const latencies = (await readFile(logFile, "utf8"))
      .split("\n")
      .filter((l) => l.length > 0)
      .map((l) => Number(l.split("\t")[2]))
      .sort((a, b) => a - b);
    return {
      rps: Math.round(Number(rps[1])),
      p50us: percentile(latencies, 0.5),
      p99us: percentile(latencies, 0.99),
      calls: Number(done[2]),
      failed: Number(done[3]),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

function run(argv: string[]): Promise<string> {
  const [cmd, ...args] = argv;
  return new Promise((resolve, reject) => {
    execFile(
      cmd as string,
      args,
      { maxBuffer: 8 << 20, timeout: 120_000 },
      (err, stdout, stderr) =>
        err ? reject(new Error(`${argv.join(" ")}: ${err.message}\n${stderr}`)) : resolve(stdout),
    );
  });
}
