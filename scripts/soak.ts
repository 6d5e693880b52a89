// `npm run soak`: many devices doing hold → chunks → commit against a real `npm start` server
// (half over gRPC, half over the bridge), then SIGTERM while replies are running.
//   --seconds N   load phase (default 180)       --devices N  concurrent devices (default 1000)
//   --chunks N    COLLECTs per hold (default 20)  --grace-ms N PTT_GRACE_MS (default 10000)
// Prints throughput, latency percentiles, lost chunks, duplicate replies, RSS before/after, the
// shutdown, and one `SOAK_RESULT {json}` line; exits 1 when anything was lost, duplicated or
// cut, or the server did not exit 0 within the grace period.
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import WebSocket from "ws";
import type { WebSocketFactory } from "../src/bridge/client/channel.js";
import { connect } from "../src/bridge/client/index.js";
import { ChunkMode, RequestPhase, StreamingService } from "../src/gen/streaming_pb.js";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "180" },
    devices: { type: "string", default: "1000" },
    chunks: { type: "string", default: "20" },
    "grace-ms": { type: "string", default: "10000" },
  },
});
const SECONDS = Number(values.seconds);
const DEVICES = Number(values.devices);
const CHUNKS = Number(values.chunks);
const GRACE_MS = Number(values["grace-ms"]);
// Devices share this many HTTP/2 connections (a gateway's pool), and have a socket each on the bridge.
const GRPC_CONNECTIONS = 10;
const ROOT = resolve(import.meta.dirname, "..");

interface Stats {
  turns: number;
  chunksAcked: number;
  lostChunks: number;
  duplicateReplies: number;
  failedTurns: number;
  retries: number;
  collectMs: number[];
  firstFrameMs: number[];
  /** Replies that were running when SIGTERM was sent: how many ended complete, how many cut. */
  runningAtSigterm: number;
  finishedAfterSigterm: number;
  cutAfterSigterm: number;
  errors: Map<string, number>;
}
const stats: Stats = {
  turns: 0,
  chunksAcked: 0,
  lostChunks: 0,
  duplicateReplies: 0,
  failedTurns: 0,
  retries: 0,
  collectMs: [],
  firstFrameMs: [],
  runningAtSigterm: 0,
  finishedAfterSigterm: 0,
  cutAfterSigterm: 0,
  errors: new Map(),
};
let sigtermSent = false;
/** Replies streaming now; each is marked when SIGTERM finds it running. */
const running = new Set<{ atSigterm: boolean }>();

/** Tracks one reply from its first frame; `end(ok)` when it ended. */
function replyStarted() {
  const reply = { atSigterm: false };
  running.add(reply);
  return (ok: boolean) => {
    running.delete(reply);
    if (!reply.atSigterm) return;
    if (ok) stats.finishedAfterSigterm++;
    else stats.cutAfterSigterm++;
  };
}
let stopping = false;

function noteError(what: string, err: unknown): void {
  const e = ConnectError.from(err);
  const key = `${what}: ${Code[e.code]} ${e.rawMessage.slice(0, 80)}`;
  stats.errors.set(key, (stats.errors.get(key) ?? 0) + 1);
}

/** Checks a committed turn's reply against the chunks that were acked. */
function checkReply(texts: string[], ends: number, acked: string[]): void {
  const reply = texts.join("");
  for (const chunk of acked) {
    const n = reply.split(chunk.trim()).length - 1;
    if (n === 0) stats.lostChunks++;
    if (n > 1) stats.duplicateReplies++;
  }
  if (ends !== 1) stats.duplicateReplies += Math.max(0, ends - 1);
}

const chunkText = (device: number, turn: number, seq: number) => `D${device}T${turn}C${seq}. `;

/** One device over gRPC: sequential COLLECTs, then COMMIT, forever (until stopping). */
async function grpcDevice(client: ReturnType<typeof grpcClient>, device: number): Promise<void> {
  const hardwareId = `soak-grpc-${device}`;
  for (let turn = 0; !stopping; turn++) {
    const sessionId = crypto.randomUUID();
    const acked: string[] = [];
    for (let seq = 1; seq <= CHUNKS; seq++) {
      const text = chunkText(device, turn, seq);
      const started = performance.now();
      try {
        for await (const _ of client.streamAudio({
          hardwareId,
          sessionId,
          phase: RequestPhase.COLLECT,
          chunkSeq: seq,
          chunkText: text,
          chunkMode: ChunkMode.DELTA,
        })) {
          // the ack frame
        }
      } catch (err) {
        if (!sigtermSent) noteError("collect", err);
        return;
      }
      stats.collectMs.push(performance.now() - started);
      stats.chunksAcked++;
      acked.push(text);
    }
    const sent = performance.now();
    let ended: ((ok: boolean) => void) | undefined;
    const texts: string[] = [];
    let ends = 0;
    try {
      for await (const res of client.streamAudio({
        hardwareId,
        sessionId,
        phase: RequestPhase.COMMIT,
        chunkMode: ChunkMode.DELTA,
      })) {
        if (!ended) {
          ended = replyStarted();
          stats.firstFrameMs.push(performance.now() - sent);
        }
        if (res.content.case === "textChunk") texts.push(res.content.value);
        if (res.content.case === "endMessage") ends++;
      }
    } catch (err) {
      ended?.(false);
      if (!sigtermSent) {
        noteError("commit", err);
        stats.failedTurns++;
      }
      return;
    }
    ended?.(true);
    stats.turns++;
    checkReply(texts, ends, acked);
  }
}

function grpcClient(baseUrl: string) {
  return createClient(StreamingService, createGrpcTransport({ baseUrl }));
}

/** One device over its own bridge socket, with the client library. */
async function bridgeDevice(url: string, device: number): Promise<void> {
  const hardwareId = `soak-bridge-${device}`;
  const ptt = connect(url, {
    hardwareId,
    WebSocket: WebSocket as unknown as WebSocketFactory,
    // Shutdown closes the socket: do not come back.
    maxBackoffMs: 60_000,
    minBackoffMs: 60_000,
  });
  try {
    for (let turn = 0; !stopping; turn++) {
      const hold = ptt.hold({ mode: "delta" });
      const acked: string[] = [];
      for (let seq = 1; seq <= CHUNKS; seq++) {
        const text = chunkText(device, turn, seq);
        const started = performance.now();
        try {
          await hold.text(text);
        } catch (err) {
          if (!sigtermSent) noteError("collect", err);
          return;
        }
        stats.collectMs.push(performance.now() - started);
        stats.chunksAcked++;
        acked.push(text);
      }
      const sent = performance.now();
      let ended: ((ok: boolean) => void) | undefined;
      const texts: string[] = [];
      let reply: Awaited<ReturnType<typeof hold.release>>;
      try {
        reply = await hold.release();
      } catch (err) {
        if (!sigtermSent) noteError("commit", err);
        return;
      }
      try {
        for await (const part of reply) {
          if (!ended) {
            ended = replyStarted();
            stats.firstFrameMs.push(performance.now() - sent);
          }
          if (part.kind === "text") texts.push(part.text);
        }
      } catch {
        // The reply's error: reply.done has it.
      }
      const done = await reply.done;
      ended?.(!done.error);
      if (done.error) {
        if (!sigtermSent) {
          noteError("commit", done.error);
          stats.failedTurns++;
        }
        return;
      }
      stats.turns++;
      checkReply(texts, done.endMessage === undefined ? 0 : 1, acked);
    }
  } finally {
    ptt.close();
  }
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Math.round(Number(m[1]) / 1024) : Number.NaN;
}

/** CPU seconds (user + system) a process has used, from /proc. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  return (
    Math.round(
      (sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number) * 100,
    ) / 100
  );
}

function startServer(): Promise<{
  child: ChildProcess;
  url: string;
  exited: Promise<number | string>;
}> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith("PTT_") && k !== "PORT" && k !== "HOST") env[k] = v;
  }
  Object.assign(env, {
    PORT: "0",
    PTT_LOG_LEVEL: "warn",
    PTT_GRACE_MS: String(GRACE_MS),
    // Each sentence of the echo paced (20 sentences: about a second a reply), so replies are
    // running when SIGTERM comes; at 5 ms a run of 400 turns had none running at SIGTERM.
    PTT_ECHO_DELAY_MS: "50",
    // One reply per device at a time, all devices at once: room for every one of them.
    PTT_MAX_CONCURRENT_REPLIES: String(DEVICES * 2),
    // The soak measures loss and throughput, not the per-device rates (test/limits).
    PTT_MAX_COLLECTS_PER_SECOND: "1000000",
    PTT_MAX_COMMITS_PER_MINUTE: "1000000",
  });
  const child = spawn(process.execPath, ["--import", "tsx", "src/bin/node.ts"], {
    cwd: ROOT,
    env,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  const exited = new Promise<number | string>((r) =>
    child.once("exit", (code, signal) => r(code ?? signal ?? "unknown")),
  );
  return new Promise((resolvePromise, reject) => {
    child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      err += d;
      const m = /ptt-edge listening on (http:\/\/\S+)/.exec(err);
      if (m) resolvePromise({ child, url: m[1] as string, exited });
    });
    exited.then((code) => reject(new Error(`server exited ${code} before listening: ${err}`)));
  });
}

const server = await startServer();
const pid = server.child.pid as number;
const rssBefore = rssMiB(pid);
console.log(
  `soak: ${DEVICES} devices (${Math.ceil(DEVICES / 2)} gRPC on ${GRPC_CONNECTIONS} connections, ${Math.floor(DEVICES / 2)} bridge sockets), ${CHUNKS} chunks per hold, ${SECONDS} s, server pid ${pid} RSS ${rssBefore} MiB`,
);
const clients = Array.from({ length: GRPC_CONNECTIONS }, () => grpcClient(server.url));
const bridgeUrl = `${server.url.replace("http", "ws")}/v1/bridge`;
const started = performance.now();
const devices: Promise<void>[] = [];
for (let d = 0; d < DEVICES; d++) {
  devices.push(
    d % 2 === 0
      ? grpcDevice(clients[d % GRPC_CONNECTIONS] as ReturnType<typeof grpcClient>, d)
      : bridgeDevice(bridgeUrl, d),
  );
}
const progress = setInterval(() => {
  const s = (performance.now() - started) / 1000;
  console.log(
    `  ${s.toFixed(0)} s: ${stats.turns} turns, ${stats.chunksAcked} chunks acked, RSS ${rssMiB(pid)} MiB`,
  );
}, 10_000);
await new Promise((r) => setTimeout(r, SECONDS * 1000));
clearInterval(progress);
const loadSeconds = (performance.now() - started) / 1000;
const serverCpu = cpuSeconds(pid);
const clientCpu = process.cpuUsage();
const turnsAtEnd = stats.turns;
const chunksAtEnd = stats.chunksAcked;
const rssAfter = rssMiB(pid);

// SIGTERM while the devices keep going: replies already running must finish; the rest stop.
sigtermSent = true;
for (const reply of running) reply.atSigterm = true;
stats.runningAtSigterm = running.size;
const sigtermAt = performance.now();
server.child.kill("SIGTERM");
const exitCode = await Promise.race([
  server.exited,
  new Promise<string>((r) => setTimeout(() => r("still running"), GRACE_MS + 10_000)),
]);
const exitMs = Math.round(performance.now() - sigtermAt);
stopping = true;
if (exitCode === "still running") server.child.kill("SIGKILL");
await Promise.race([Promise.allSettled(devices), new Promise((r) => setTimeout(r, 5000))]);

const result = {
  devices: DEVICES,
  chunksPerHold: CHUNKS,
  seconds: Math.round(loadSeconds * 10) / 10,
  turns: turnsAtEnd,
  turnsPerSecond: Math.round(turnsAtEnd / loadSeconds),
  chunksPerSecond: Math.round(chunksAtEnd / loadSeconds),
  collectAckMs: { p50: percentile(stats.collectMs, 0.5), p99: percentile(stats.collectMs, 0.99) },
  commitFirstFrameMs: {
    p50: percentile(stats.firstFrameMs, 0.5),
    p99: percentile(stats.firstFrameMs, 0.99),
  },
  lostChunks: stats.lostChunks,
  duplicateReplies: stats.duplicateReplies,
  failedTurns: stats.failedTurns,
  rssMiB: { before: rssBefore, after: rssAfter },
  cpuSeconds: {
    server: serverCpu,
    client: Math.round((clientCpu.user + clientCpu.system) / 10_000) / 100,
  },
  shutdown: {
    exitCode,
    exitMs,
    graceMs: GRACE_MS,
    repliesRunning: stats.runningAtSigterm,
    repliesFinished: stats.finishedAfterSigterm,
    repliesCut: stats.cutAfterSigterm,
  },
  errors: Object.fromEntries(stats.errors),
};
console.log(
  [
    `throughput: ${result.turnsPerSecond} turns/s, ${result.chunksPerSecond} COLLECTs/s (${result.turns} turns in ${result.seconds} s)`,
    `COLLECT ack ms p50 ${result.collectAckMs.p50} p99 ${result.collectAckMs.p99}; COMMIT→first frame ms p50 ${result.commitFirstFrameMs.p50} p99 ${result.commitFirstFrameMs.p99}`,
    `lost chunks ${result.lostChunks}, duplicate replies ${result.duplicateReplies}, failed turns ${result.failedTurns}`,
    `server RSS ${rssBefore} MiB before, ${rssAfter} MiB after; CPU s: server ${result.cpuSeconds.server}, load generator ${result.cpuSeconds.client}`,
    `SIGTERM: exit ${exitCode} after ${exitMs} ms (grace ${GRACE_MS} ms); replies running ${result.shutdown.repliesRunning}, finished ${result.shutdown.repliesFinished}, cut ${result.shutdown.repliesCut}`,
  ].join("\n"),
);
if (stats.errors.size > 0) console.log("errors:", result.errors);
console.log(`SOAK_RESULT ${JSON.stringify(result)}`);
const ok =
  result.lostChunks === 0 &&
  result.duplicateReplies === 0 &&
  result.failedTurns === 0 &&
  result.shutdown.repliesCut === 0 &&
  result.shutdown.repliesFinished === result.shutdown.repliesRunning &&
  exitCode === 0 &&
  exitMs <= GRACE_MS + 2000;
process.exit(ok ? 0 : 1);
