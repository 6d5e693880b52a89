import { mkdtemp, rm } from "node:fs/promises";
import { Agent } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { BridgeChannel, type WebSocketFactory } from "../../src/bridge/client/channel.js";
import { createBridgeTransport } from "../../src/bridge/client/transport.js";
import { ChunkMode } from "../../src/gen/streaming_pb.js";
import { limitsEnv } from "../support/spawn-runtime.js";
import { type SpawnedWorker, spawnWrangler } from "../support/spawn-wrangler.js";
import { clientFor, collect, commit, newDevice, newSession, streamAudio } from "./calls.js";
import { contractSuite } from "./suite.js";
import { type Capabilities, type Target, TEST_ECHO_DELAY_MS, TEST_LIMITS } from "./target.js";

/**
 * What Workers cannot do, in one place:
 * - no gRPC: a Worker cannot send HTTP trailers to its client (Connect and gRPC-Web work);
 * - no movable clock in workerd: TTL cases run in process on Node, in the store suite, and
 *   as alarm tests in workerd;
 * - workerd answers an over-size upload early and drops that keep-alive connection;
 * - max_concurrent_replies counts per device object (each object is its own instance).
 */
/**
 * Fewer reply slots than the other runs (40, not 120): the limits case fills every slot of one
 * device object with long replies at once, and at load 8 and more wrangler dev's ProxyWorker
 * answered some of 120 simultaneous long requests with HTTP 503 after "Connection reset by
 * peer" on its own connection to workerd: those calls never reached the Worker (a counter in
 * it said so), and the case failed or passed only on CI's retry. 40 test the same rule.
 */
const LIMITS = {
  ...TEST_LIMITS,
  maxConcurrentReplies: 40,
  maxRepliesPerDevice: 40,
  maxRepliesPerConnection: 40,
};

const CAPABILITIES: Capabilities = {
  oversizeRequestResetsConnection: true,
};

/**
 * A connection per call: wrangler dev's proxy closes idle keep-alive connections, and a
 * loaded CI machine lets a pooled one be reused just as it closes (ECONNRESET: UNAVAILABLE
 * for a call that never reached the Worker). Clients of a real Worker go through
 * Cloudflare's edge instead.
 */
const FRESH = new Agent({ keepAlive: false });

const transports: Record<string, (w: SpawnedWorker, channel: () => BridgeChannel) => Transport> = {
  "connect-h1": (w) =>
    createConnectTransport({ baseUrl: w.url, httpVersion: "1.1", nodeOptions: { agent: FRESH } }),
  "grpc-web": (w) =>
    createGrpcWebTransport({ baseUrl: w.url, httpVersion: "1.1", nodeOptions: { agent: FRESH } }),
  bridge: (_w, channel) => createBridgeTransport(channel()),
};

describe("contract: workers (wrangler dev --local)", () => {
  let worker: SpawnedWorker;
  let state: string;
  let channel: BridgeChannel;
  beforeAll(async () => {
    state = await mkdtemp(join(tmpdir(), "ptt-wrangler-"));
    worker = await spawnWrangler(
      { ...limitsEnv(LIMITS), PTT_ECHO_DELAY_MS: String(TEST_ECHO_DELAY_MS) },
      state,
    );
    // The contract's path, without ?hardware_id=: the socket gets an object of its own, and
    // each call is forwarded to its device's object over Connect.
    channel = new BridgeChannel(`${worker.url.replace("http", "ws")}/v1/bridge`, {
      WebSocket: WebSocket as unknown as WebSocketFactory,
    });
    await channel.ready();
  }, 90_000);
  afterAll(async () => {
    channel?.close();
    await worker?.stop();
    await rm(state, { recursive: true, force: true });
  });
  // A hang-up is not an interrupt (docs/protocol.md §9): the reply goes on in the device object
  // for the resume window, and an interrupt still stops it (test/workers/hang-up.test.ts: with
  // PTT_RESUME_WINDOW_MS=0 the hang-up itself stops it).
  it("a Connect client that hangs up mid-reply: the reply goes on in the device object until interrupted", async () => {
    const client = clientFor({
      name: "workers/hang-up",
      transport: createConnectTransport({ baseUrl: worker.url, httpVersion: "1.1" }),
      limits: LIMITS,
      echoDelayMs: TEST_ECHO_DELAY_MS,
    });
    const hw = newDevice("hang-up");
    const sid = newSession();
    // Hundreds of short sentences, TEST_ECHO_DELAY_MS apart: a reply of several seconds.
    const chunk = "Go. ".repeat(LIMITS.maxChunkTextBytes / 4);
    const delta = { chunkMode: ChunkMode.DELTA };
    for (let seq = 1; (seq + 1) * chunk.length <= LIMITS.maxSessionTextBytes; seq++) {
      expect((await streamAudio(client, collect(hw, sid, seq, chunk, delta))).code).toBeUndefined();
    }
    const call = new AbortController();
    const r = await streamAudio(client, commit(hw, sid), {
      signal: call.signal,
      onFrame: (f) => {
        if (f.case === "textChunk") call.abort();
      },
    });
    expect(r.code).toBe(Code.Canceled);
    expect(r.frames.some((f) => f.case === "endMessage")).toBe(false);
    await new Promise((done) => setTimeout(done, 500));
    // Still running without its caller: the interrupt finds it, and then nothing runs.
    const interrupted = await client.interruptSession({ hardwareId: hw });
    expect(interrupted.interruptedSessions).toEqual([sid]);
    const again = await client.interruptSession({ hardwareId: hw });
    expect(again.interruptedSessions).toEqual([]);
  });

  for (const [name, make] of Object.entries(transports)) {
    describe(`workers/${name}`, () => {
      let target: Target;
      beforeAll(() => {
        target = {
          name: `workers/${name}`,
          transport: make(worker, () => channel),
          limits: LIMITS,
          echoDelayMs: TEST_ECHO_DELAY_MS,
        };
      });
      // The bridge envelope has no header frame: a call's metadata come with its CallEnd.
      contractSuite({ ...CAPABILITIES, headersWithTrailers: name === "bridge" }, () => target);
    });
  }
});
