// Replay cost of a resumed COMMIT (docs/protocol.md §9), Node, gRPC, in one process: a reply of
// FRAMES text frames is committed, dropped after its first frame, left to finish into the
// journal, then resumed from frame 1. Measures frames/s replayed and resume → first frame
// (client side: the call sent to its first frame), for the in-process journal and the Redis
// journal (two instances: the resume lands on the other one). Alone:
// `node --import tsx bench/resume.ts`.
import { createGrpcTransport } from "@connectrpc/connect-node";
import { silentLogger } from "../src/core/ptt-core.js";
import { openRedisBackend } from "../src/drivers/redis/redis-backend.js";
import { type NodeServer, startNodeServer } from "../src/runtimes/node/server.js";
import {
  clientFor,
  commit,
  newDevice,
  newSession,
  type StreamingClient,
} from "../test/contract/calls.js";
import { TEST_LIMITS } from "../test/contract/target.js";
import { startRedisServer } from "../test/support/redis-server.js";
import { percentile } from "./h2load.js";

const FRAMES = 2000;
const ROUNDS = 15;
const limits = { ...TEST_LIMITS, maxChunkTextBytes: 16 * 1024, maxSessionTextBytes: 64 * 1024 };

function client(server: NodeServer): StreamingClient {
  return clientFor({
    name: "bench",
    transport: createGrpcTransport({ baseUrl: server.url }),
    limits,
    echoDelayMs: 0,
  });
}

async function round(a: StreamingClient, b: StreamingClient) {
  const hw = newDevice("bench");
  const sid = newSession();
  const hangUp = new AbortController();
  try {
    for await (const _ of a.streamAudio(commit(hw, sid, { prompt: "a. ".repeat(FRAMES).trim() }), {
      signal: hangUp.signal,
    })) {
      hangUp.abort();
    }
  } catch {
    // the drop
  }
  // Follow the reply to its end once: it is then all in the journal.
  for await (const _ of b.streamAudio(commit(hw, sid), { headers: { "ptt-resume-from": "1" } })) {
    // live
  }
  const sent = performance.now();
  let first = 0;
  let frames = 0;
  for await (const _ of b.streamAudio(commit(hw, sid), { headers: { "ptt-resume-from": "1" } })) {
    if (frames++ === 0) first = performance.now() - sent;
  }
  const total = performance.now() - sent;
  return { firstMs: first, framesPerSec: (frames - 1) / (total / 1000) };
}

async function measure(name: string, a: StreamingClient, b: StreamingClient) {
  await round(a, b); // warm-up
  const firsts: number[] = [];
  const rates: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const r = await round(a, b);
    firsts.push(r.firstMs);
    rates.push(r.framesPerSec);
  }
  console.log(
    `${name}: resume → first frame p50 ${percentile(
      firsts.sort((x, y) => x - y),
      0.5,
    ).toFixed(2)} ms, ` +
      `replay ${Math.round(
        percentile(
          rates.sort((x, y) => x - y),
          0.5,
        ),
      )} frames/s (median of ${ROUNDS}, ${FRAMES - 1} frames each)`,
  );
}

const local = await startNodeServer({ port: 0, graceMs: 0, config: { limits } });
await measure("in-process journal", client(local), client(local));
await local.close(0);

const redis = await startRedisServer();
const servers: NodeServer[] = [];
const backends = [];
for (let i = 0; i < 2; i++) {
  const backend = await openRedisBackend(
    { url: redis.url, prefix: "ptt", commandTimeoutMs: 5000 },
    silentLogger,
  );
  backends.push(backend);
  servers.push(
    await startNodeServer({
      port: 0,
      graceMs: 0,
      config: {
        limits,
        store: backend.store,
        replyBus: backend.replyBus,
        journal: backend.journal,
      },
    }),
  );
}
await measure(
  "Redis journal, resumed on the other instance",
  client(servers[0] as NodeServer),
  client(servers[1] as NodeServer),
);
for (const s of servers) await s.close(0);
for (const b of backends) await b.close();
await redis.close();
