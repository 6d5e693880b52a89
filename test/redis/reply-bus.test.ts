import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ReplyBus } from "../../src/core/ports.js";
import { silentLogger } from "../../src/core/ptt-core.js";
import {
  openRedisConnections,
  type RedisConnections,
} from "../../src/drivers/redis/redis-connection.js";
import { createRedisReplyBus } from "../../src/drivers/redis/redis-reply-bus.js";
import { StreamingService } from "../../src/gen/streaming_pb.js";
import { type NodeServer, startNodeServer } from "../../src/runtimes/node/server.js";
import {
  type CallResult,
  cancel,
  collect,
  commit,
  newDevice,
  newSession,
  streamAudio,
} from "../contract/calls.js";
import { longText } from "../contract/commit.cases.js";
import { type RedisServer, startRedisServer } from "../support/redis-server.js";

/**
 * The reply bus through real parts: two Node instances, each with its own Redis connections,
 * one redis-server between them. A reply runs on A; InterruptSession, CANCEL and barge-in
 * arrive at B and must stop it. (The sessions live in each instance's memory here: the bus
 * alone is under test; the shared-store cases run the same stops over the Redis store.)
 */
describe("reply bus over Redis pub/sub", { timeout: 20_000 }, () => {
  let redis: RedisServer;
  const connections: RedisConnections[] = [];
  const buses: ReplyBus[] = [];
  let a: NodeServer;
  let b: NodeServer;

  async function instance(): Promise<NodeServer> {
    const conn = openRedisConnections({
      url: redis.url,
      commandTimeoutMs: 2000,
      logger: silentLogger,
    });
    connections.push(conn);
    await conn.ready(10_000);
    const replyBus = createRedisReplyBus({
      client: conn.client,
      subscriber: conn.subscriber,
      prefix: "ptt-test",
      logger: silentLogger,
    });
    buses.push(replyBus);
    await replyBus.subscribed;
    // 20 ms between sentences: a 300-sentence reply runs for seconds unless something stops it.
    return startNodeServer({ port: 0, graceMs: 0, config: { replyBus, echoDelayMs: 20 } });
  }

  beforeAll(async () => {
    redis = await startRedisServer();
    a = await instance();
    b = await instance();
  }, 30_000);

  afterAll(async () => {
    await Promise.all([a?.close(0), b?.close(0)]);
    await Promise.all(buses.map((bus) => bus.close()));
    await Promise.all(connections.map((c) => c.close()));
    await redis?.close();
  });

  const client = (server: NodeServer) =>
    createClient(StreamingService, createGrpcTransport({ baseUrl: server.url }));

  /** Commits a long hold on `server`; resolves `started` at the reply's first frame. */
  function longReply(server: NodeServer, hw: string, sid: string) {
    let firstFrame!: () => void;
    const started = new Promise<void>((r) => {
      firstFrame = r;
    });
    let endedAt = 0;
    const done: Promise<CallResult> = streamAudio(
      client(server),
      commit(hw, sid, { prompt: longText(300) }),
      { onFrame: (f) => f.case === "textChunk" && firstFrame() },
    ).then((r) => {
      endedAt = performance.now();
      return r;
    });
    return { started, done, endedAt: () => endedAt };
  }

  it("InterruptSession on B stops A's reply and names its session", async () => {
    const hw = newDevice("bus");
    const sid = newSession();
    const reply = longReply(a, hw, sid);
    await reply.started;
    const sentAt = performance.now();
    const res = await client(b).interruptSession({ hardwareId: hw });
    expect(res.success).toBe(true);
    expect(res.interruptedSessions).toEqual([sid]);
    const r = await reply.done;
    expect(Code[r.code ?? -1]).toBe("Canceled");
    expect(r.message).toBe("reply interrupted by InterruptSession");
    // The reply had seconds left; the bus target on loopback is 100 ms (bench), 1 s here.
    expect(reply.endedAt() - sentAt).toBeLessThan(1000);
  });

  it("InterruptSession names the replies of every instance, its own included", async () => {
    const hw = newDevice("bus");
    const onA = newSession();
    const onB = newSession();
    const replies = [longReply(a, hw, onA), longReply(b, hw, onB)];
    await Promise.all(replies.map((r) => r.started));
    const res = await client(a).interruptSession({ hardwareId: hw });
    expect([...res.interruptedSessions].sort()).toEqual([onA, onB].sort());
    for (const r of await Promise.all(replies.map((x) => x.done))) {
      expect(Code[r.code ?? -1]).toBe("Canceled");
    }
  });

  it("CANCEL on B stops the session's reply on A, and no other", async () => {
    const hw = newDevice("bus");
    const sid = newSession();
    const other = newSession();
    const reply = longReply(a, hw, sid);
    const bystander = longReply(a, hw, other);
    await Promise.all([reply.started, bystander.started]);
    const sentAt = performance.now();
    const res = await streamAudio(client(b), cancel(hw, sid));
    expect(res.code).toBeUndefined();
    const r = await reply.done;
    expect(Code[r.code ?? -1]).toBe("Canceled");
    expect(r.message).toBe("reply cancelled by CANCEL");
    expect(reply.endedAt() - sentAt).toBeLessThan(1000);
    // The device's other reply runs on until it is interrupted.
    expect(bystander.endedAt()).toBe(0);
    await client(a).interruptSession({ hardwareId: hw });
    expect(Code[(await bystander.done).code ?? -1]).toBe("Canceled");
  });

  it("barge-in: a new hold pressed on B stops the device's reply on A", async () => {
    const hw = newDevice("bus");
    const reply = longReply(a, hw, newSession());
    await reply.started;
    const pressedAt = performance.now();
    const res = await streamAudio(client(b), collect(hw, newSession(), 1, "wait"));
    expect(res.code).toBeUndefined();
    const r = await reply.done;
    expect(Code[r.code ?? -1]).toBe("Canceled");
    expect(r.message).toBe("reply interrupted: the device started a new hold");
    expect(reply.endedAt() - pressedAt).toBeLessThan(1000);
  });

  it("another device's reply is left alone", async () => {
    const hw = newDevice("bus");
    const reply = longReply(a, hw, newSession());
    await reply.started;
    const res = await client(b).interruptSession({ hardwareId: newDevice("bus") });
    expect(res.interruptedSessions).toEqual([]);
    expect(reply.endedAt()).toBe(0);
    await client(b).interruptSession({ hardwareId: hw });
    expect(Code[(await reply.done).code ?? -1]).toBe("Canceled");
  });
});
