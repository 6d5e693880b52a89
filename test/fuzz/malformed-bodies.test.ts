import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StreamingService } from "../../src/gen/streaming_pb.js";
import {
  ChunkMode,
  collect,
  commit,
  newSession,
  replyText,
  streamAudio,
} from "../contract/calls.js";
import { bridgeMessages, envelopedBytes, jsonEnveloped, jsonText } from "./malformed-inputs.js";
import { bridgeSender, grpcSender, httpSender, type Sender } from "./wire-clients.js";

// Malformed bodies on every transport of a real `npm start` process (fast-check). Asserted:
// the process never dies, every input gets a status (gRPC status, HTTP status with the
// protocol's end frame, bridge CallEnd or close code), RSS stays bounded, and a well-behaved
// hold running beside the fuzzing loses nothing. FUZZ_RUNS inputs per transport: a few
// hundred in CI; `npm run fuzz` runs 20,000 per transport (120,000 in all).
const RUNS = Number(process.env.FUZZ_RUNS ?? 150);
const RSS_GROWTH_LIMIT_MIB = 256;
const ROOT = resolve(import.meta.dirname, "../..");

let server: ChildProcess;
let url: string;
let rssStart = 0;
let stderr = "";

function rssMiB(): number {
  const status = readFileSync(`/proc/${server.pid}/status`, "utf8");
  return Math.round(Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) / 1024);
}

function expectAlive(): void {
  expect(server.exitCode, `the server died: ${stderr.slice(-2000)}`).toBeNull();
  expect(server.signalCode, `the server died: ${stderr.slice(-2000)}`).toBeNull();
}

/**
 * The witness: one device holding the key through the whole run, a DELTA chunk after every few
 * inputs, committing every 40 chunks; each reply must be exactly its chunks.
 */
class Witness {
  private readonly client = createClient(StreamingService, createGrpcTransport({ baseUrl: url }));
  private session = newSession();
  private chunks: string[] = [];
  turns = 0;

  async chunk(): Promise<void> {
    const text = `w${this.turns}c${this.chunks.length + 1} `;
    const r = await streamAudio(
      this.client,
      collect("fuzz-witness", this.session, this.chunks.length + 1, text, {
        chunkMode: ChunkMode.DELTA,
      }),
    );
    expect(r.code, `witness COLLECT: ${r.message}`).toBeUndefined();
    this.chunks.push(text);
    if (this.chunks.length >= 40) await this.commit();
  }

  async commit(): Promise<void> {
    if (this.chunks.length === 0) return;
    const r = await streamAudio(this.client, commit("fuzz-witness", this.session));
    expect(r.code, `witness COMMIT: ${r.message}`).toBeUndefined();
    expect(replyText(r).trim()).toBe(this.chunks.join("").trim());
    this.turns++;
    this.session = newSession();
    this.chunks = [];
  }
}

let witness: Witness;
let inputs = 0;

beforeAll(async () => {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith("PTT_") && k !== "PORT" && k !== "HOST") env[k] = v;
  }
  // Per-device rates and open sessions lifted: otherwise most inputs (all on a few devices)
  // would stop at those limits instead of reaching the store and the workflow.
  Object.assign(env, {
    PORT: "0",
    PTT_LOG_LEVEL: "error",
    PTT_MAX_OPEN_SESSIONS_PER_DEVICE: "1000000",
    PTT_MAX_COLLECTS_PER_SECOND: "1000000",
    PTT_MAX_COMMITS_PER_MINUTE: "1000000",
  });
  server = spawn(process.execPath, ["--import", "tsx", "src/bin/node.ts"], {
    cwd: ROOT,
    env,
    stdio: ["ignore", "ignore", "pipe"],
  });
  url = await new Promise<string>((ok, fail) => {
    server.stderr?.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
      const m = /ptt-edge listening on (http:\/\/\S+)/.exec(stderr);
      if (m) ok(m[1] as string);
    });
    server.once("exit", (code) => fail(new Error(`server exited ${code}: ${stderr}`)));
  });
  witness = new Witness();
  await witness.chunk();
  rssStart = rssMiB();
}, 60_000);

afterAll(async () => {
  if (!server) return;
  const exited = new Promise((r) => server.once("exit", r));
  server.kill("SIGTERM");
  await exited;
});

const transports: [string, fc.Arbitrary<Uint8Array>, () => { send: Sender; close(): void }][] = [
  ["gRPC (h2c)", envelopedBytes, () => grpcSender(url)],
  [
    "Connect streaming, binary",
    envelopedBytes,
    () => plain(httpSender(url, "application/connect+proto")),
  ],
  [
    "Connect streaming, JSON",
    jsonEnveloped,
    () => plain(httpSender(url, "application/connect+json")),
  ],
  [
    "Connect unary JSON (InterruptSession)",
    jsonText.map((t) => new TextEncoder().encode(t)),
    () => plain(httpSender(url, "application/json", "unary")),
  ],
  ["gRPC-Web, binary", envelopedBytes, () => plain(httpSender(url, "application/grpc-web+proto"))],
  ["bridge (WebSocket)", bridgeMessages, () => bridgeSender(url)],
];

function plain(send: Sender) {
  return { send, close() {} };
}

describe(`fuzz: ${RUNS} malformed bodies per transport against npm start`, () => {
  for (const [name, inputsOf, open] of transports) {
    it(
      name,
      async () => {
        const sender = open();
        const statuses = new Map<string, number>();
        try {
          await fc.assert(
            fc.asyncProperty(inputsOf, async (body) => {
              const answer = await sender.send(body);
              statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
              if (++inputs % 10 === 0) await witness.chunk();
            }),
            { numRuns: RUNS, endOnFailure: true },
          );
        } finally {
          sender.close();
        }
        expectAlive();
        console.log(
          `${name}: ${RUNS} inputs, answers ${JSON.stringify(Object.fromEntries(statuses))}`,
        );
      },
      60_000 + RUNS * 100,
    );
  }

  it("afterwards: the server is alive, its RSS bounded, and the witness hold lost nothing", async () => {
    await witness.commit();
    expectAlive();
    const rssEnd = rssMiB();
    console.log(
      `fuzz: ${inputs} inputs; server RSS ${rssStart} MiB → ${rssEnd} MiB; witness turns ${witness.turns}`,
    );
    expect(rssEnd - rssStart).toBeLessThan(RSS_GROWTH_LIMIT_MIB);
    expect(witness.turns).toBeGreaterThan(0);
  });
});
