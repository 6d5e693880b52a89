import { Code, createClient } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StreamingService } from "../../src/gen/streaming_pb.js";
import {
  type CallResult,
  collect,
  commit,
  newDevice,
  newSession,
  replyText,
  streamAudio,
} from "../contract/calls.js";
import { longText } from "../contract/commit.cases.js";
import { type RedisServer, startRedisServer } from "../support/redis-server.js";
import { type SpawnedRuntime, spawnRuntime } from "../support/spawn-runtime.js";

/**
 * Separate processes on one Redis: Node, Bun and Deno share holds and stop each other's
 * replies; two Node instances take 40 concurrent COMMITs of one session; a kill -9 mid-hold
 * loses no acked chunk.
 */
describe("instances of every runtime sharing one Redis", { timeout: 30_000 }, () => {
  let redis: RedisServer;
  const started: SpawnedRuntime[] = [];
  let node: SpawnedRuntime;
  let node2: SpawnedRuntime;
  let bun: SpawnedRuntime;
  let deno: SpawnedRuntime;

  const spawn = async (runtime: "node" | "bun" | "deno") => {
    const rt = await spawnRuntime(runtime, {
      PTT_STORE: redis.url,
      PTT_ECHO_DELAY_MS: "20",
      PTT_GRACE_MS: "0",
      PTT_LOG_LEVEL: "warn",
    });
    started.push(rt);
    return rt;
  };

  beforeAll(async () => {
    redis = await startRedisServer();
    [node, node2, bun, deno] = await Promise.all([
      spawn("node"),
      spawn("node"),
      spawn("bun"),
      spawn("deno"),
    ]);
  }, 90_000);

  afterAll(async () => {
    await Promise.all(started.map((rt) => rt.stop()));
    await redis?.close();
  });

  // A different transport per runtime: the store is what they share, not the protocol.
  const grpc = (rt: SpawnedRuntime) =>
    createClient(StreamingService, createGrpcTransport({ baseUrl: rt.grpcUrl }));
  const connect = (rt: SpawnedRuntime) =>
    createClient(StreamingService, createConnectTransport({ baseUrl: rt.url, httpVersion: "1.1" }));
  const grpcWeb = (rt: SpawnedRuntime) =>
    createClient(StreamingService, createGrpcWebTransport({ baseUrl: rt.url, httpVersion: "1.1" }));

  it("a hold collected on Node, Bun and Deno commits whole on any of them", async () => {
    const hw = newDevice("rt");
    const sid = newSession();
    const clients = [grpc(node), connect(bun), grpcWeb(deno)];
    for (let seq = 1; seq <= 9; seq++) {
      const client = clients[seq % 3] as (typeof clients)[number];
      const r = await streamAudio(client, collect(hw, sid, seq, `${seq} `, { chunkMode: 2 }));
      expect(r.code).toBeUndefined();
      expect(r.trailers.get("ptt-collect")).toBe("accepted");
      expect(r.trailers.get("ptt-last-seq")).toBe(String(seq));
    }
    const r = await streamAudio(connect(deno), commit(hw, sid));
    expect(r.code).toBeUndefined();
    expect(replyText(r)).toBe("1 2 3 4 5 6 7 8 9 ");
    // Every other instance now knows it is committed.
    for (const client of [grpc(node), connect(bun)]) {
      const again = await streamAudio(client, commit(hw, sid));
      expect(Code[again.code ?? -1]).toBe("AlreadyExists");
      expect(again.message).toBe(`session ${sid} is already committed`);
    }
  });

  it("InterruptSession on Deno and barge-in on Node stop replies running on Bun", async () => {
    const hw = newDevice("rt");
    const first = longReply(connect(bun), hw);
    await first.started;
    const res = await grpcWeb(deno).interruptSession({ hardwareId: hw });
    expect(res.interruptedSessions).toEqual([first.sid]);
    expect((await first.done).message).toBe("reply interrupted by InterruptSession");

    const second = longReply(connect(bun), hw);
    await second.started;
    const press = await streamAudio(grpc(node), collect(hw, newSession(), 1, "again"));
    expect(press.code).toBeUndefined();
    const r = await second.done;
    expect(Code[r.code ?? -1]).toBe("Canceled");
    expect(r.message).toBe("reply interrupted: the device started a new hold");
  });

  it("40 concurrent COMMITs of one session over two Node instances: one reply, 39 ALREADY_EXISTS", async () => {
    const hw = newDevice("rt");
    const sid = newSession();
    await streamAudio(grpc(node), collect(hw, sid, 1, "only once"));
    const clients = [grpc(node), grpc(node2)];
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        streamAudio(clients[i % 2] as (typeof clients)[number], commit(hw, sid)),
      ),
    );
    const ok = results.filter((r) => r.code === undefined);
    const dup = results.filter((r) => r.code === Code.AlreadyExists);
    expect(ok.length).toBe(1);
    expect(replyText(ok[0] as CallResult)).toBe("only once");
    expect(dup.length).toBe(39);
    for (const r of dup) expect(r.message).toBe(`session ${sid} is already committed`);
  });

  it("kill -9 of the instance holding a hold: the other one commits every acked chunk", async () => {
    const victim = await spawn("node");
    const hw = newDevice("rt");
    const sid = newSession();
    for (let seq = 1; seq <= 5; seq++) {
      const r = await streamAudio(grpc(victim), collect(hw, sid, seq, `${seq} `, { chunkMode: 2 }));
      expect(r.code).toBeUndefined();
    }
    victim.process.kill("SIGKILL");
    await victim.stop();
    for (let seq = 6; seq <= 8; seq++) {
      const r = await streamAudio(grpc(node), collect(hw, sid, seq, `${seq} `, { chunkMode: 2 }));
      expect(r.code).toBeUndefined();
    }
    const r = await streamAudio(grpc(node2), commit(hw, sid));
    expect(replyText(r)).toBe("1 2 3 4 5 6 7 8 ");
  });

  function longReply(client: ReturnType<typeof grpc>, hw: string) {
    const sid = newSession();
    let firstFrame!: () => void;
    const started = new Promise<void>((r) => {
      firstFrame = r;
    });
    const done = streamAudio(client, commit(hw, sid, { prompt: longText(300) }), {
      onFrame: (f) => f.case === "textChunk" && firstFrame(),
    });
    return { sid, started, done };
  }
});
