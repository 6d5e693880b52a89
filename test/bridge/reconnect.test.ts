import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import {
  type ChannelState,
  type ChunkAck,
  connect,
  type Ptt,
  type ReplyPart,
  type TextMode,
  type WebSocketFactory,
} from "../../src/bridge/client/index.js";
import type { CallEnd } from "../../src/gen/bridge_pb.js";
import { RequestPhase } from "../../src/gen/streaming_pb.js";
import { type NodeServer, startNodeServer } from "../../src/runtimes/node/server.js";
import { newDevice } from "../contract/calls.js";
import { partsText } from "../support/reply-parts.js";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.js";
import { sleep, until } from "../support/wait.js";

// docs/protocol.md §6, the reconnect guarantee, through the client library: a TCP proxy
// between client and server cuts the connection (both halves destroyed, bytes in
// flight lost) while chunks are un-acked, while the client is reconnecting, and
// while a reply streams.

const ECHO_DELAY_MS = 20;

describe("bridge reconnect (client library through a TCP proxy that drops connections)", () => {
  let server: NodeServer;
  let proxy: TcpProxy;
  const clients: Ptt[] = [];

  beforeAll(async () => {
    server = await startNodeServer({
      port: 0,
      config: { echoDelayMs: ECHO_DELAY_MS },
      graceMs: 0,
    });
    proxy = await startTcpProxy({ host: "127.0.0.1", port: server.port });
  });
  afterEach(() => {
    proxy.refuse = false;
    for (const c of clients.splice(0)) c.close();
  });
  afterAll(async () => {
    await proxy.close();
    await server.close(0);
  });

  function client(states: ChannelState[] = []): Ptt {
    const ptt = connect(proxy.wsUrl("/v1/bridge"), {
      hardwareId: newDevice("rc"),
      WebSocket: WebSocket as unknown as WebSocketFactory,
      minBackoffMs: 20,
      maxBackoffMs: 80,
      onState: (s) => states.push(s),
    });
    clients.push(ptt);
    return ptt;
  }

  it.each(["delta", "snapshot"] as TextMode[])(
    "%s: chunks un-acked at the drop and chunks sent while reconnecting all reach the reply",
    async (mode) => {
      const states: ChannelState[] = [];
      const ptt = client(states);
      await ptt.channel.ready();
      const acceptedBefore = proxy.accepted;
      const hold = ptt.hold({ mode });
      const sent: string[] = [];
      const acks: Promise<ChunkAck>[] = [];
      // delta: each chunk is the next words; snapshot: each chunk is the transcript so far.
      const send = (i: number) => {
        const piece = `w${i} `;
        sent.push(piece);
        const chunk = mode === "delta" ? piece : sent.join("");
        const ack = hold.text(chunk);
        acks.push(ack);
        return ack;
      };

      for (let i = 1; i <= 5; i++) await send(i);
      expect(hold.acked).toBe(5);
      expect(hold.pending).toBe(0);

      // Three chunks written to the socket and not acked: the drop loses them in flight.
      for (let i = 6; i <= 8; i++) void send(i);
      expect(hold.pending).toBe(3);
      proxy.refuse = true; // the first reconnect attempts fail too
      expect(proxy.dropAll()).toBe(1);
      await until(() => ptt.state === "reconnecting", "the channel to notice the drop");

      // Chunks sent while reconnecting are queued behind the un-acked ones.
      for (let i = 9; i <= 12; i++) void send(i);
      await until(() => proxy.accepted > acceptedBefore, "a refused reconnect attempt");
      expect(ptt.state).toBe("reconnecting");
      expect(hold.pending).toBeGreaterThanOrEqual(4);
      proxy.refuse = false;

      const reply = await hold.release();
      expect(hold.pending).toBe(0);
      expect(hold.acked).toBe(12);
      const outcomes = await Promise.all(acks);
      expect(outcomes.map((a) => a.seq)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
      // 6..8 died in the proxy before the server saw them: stored on the resend.
      expect(outcomes.map((a) => a.outcome)).toEqual(Array(12).fill("accepted"));

      const parts: ReplyPart[] = [];
      for await (const part of reply) parts.push(part);
      const status = await reply.done;
      expect(status.error).toBeUndefined();
      expect(status.endMessage).toBe("RESPONSE_COMPLETED");
      expect(partsText(parts)).toBe(sent.join(""));
      expect(states).toContain("reconnecting");
      expect(states.at(-1)).toBe("open");
      expect(proxy.accepted - acceptedBefore).toBeGreaterThanOrEqual(2); // refused, then the one that worked
    },
    15_000,
  );

  it("acks lost in the drop: stored chunks are resent, answered duplicate, and count once", async () => {
    const ptt = client();
    await ptt.channel.ready();
    const hold = ptt.hold({ mode: "delta" });
    const pieces = Array.from({ length: 8 }, (_, i) => `p${i + 1} `);
    const acks: Promise<ChunkAck>[] = [];
    for (let i = 0; i < 4; i++) acks.push(hold.text(pieces[i] as string));
    await Promise.all(acks);
    const stored = () => server.core.metrics.chunks.get("accepted") ?? 0;
    const storedBefore = stored();
    expect(proxy.stallReplies()).toBe(1);
    for (let i = 4; i < 8; i++) acks.push(hold.text(pieces[i] as string));
    // The server stored all four; their acks are stuck in the proxy.
    await until(() => stored() === storedBefore + 4, "the server to store chunks 5..8");
    await sleep(20);
    expect(hold.pending).toBe(4);
    expect(hold.acked).toBe(4);
    expect(proxy.dropAll()).toBe(1);

    const reply = await hold.release();
    expect(hold.pending).toBe(0);
    expect(hold.acked).toBe(8);
    const outcomes = (await Promise.all(acks)).map((a) => a.outcome);
    expect(outcomes).toEqual([...Array(4).fill("accepted"), ...Array(4).fill("duplicate")]);
    const parts: ReplyPart[] = [];
    for await (const part of reply) parts.push(part);
    expect((await reply.done).error).toBeUndefined();
    expect(partsText(parts)).toBe(pieces.join(""));
  });

  it("a drop while a COMMIT reply streams: the client resumes it by itself, each part once, the workflow ran once", async () => {
    const ptt = client();
    await ptt.channel.ready();
    const hold = ptt.hold({ mode: "delta" });
    const spoken = "one. two. three. four. five. six. seven. eight. nine. ten. ".repeat(5);
    await hold.text(spoken);
    const runsBefore = server.core.metrics.workflowRuns;
    const okBefore = server.core.metrics.commits.get("ok") ?? 0;
    const resumedBefore = server.core.metrics.resumes.get("ok") ?? 0;

    const reply = await hold.release();
    const parts: ReplyPart[] = [];
    const iterate = (async () => {
      for await (const part of reply) parts.push(part);
    })();
    await until(() => parts.length >= 2, "two reply parts");
    expect(server.core.replies.inFlight).toBe(1);
    expect(proxy.dropAll()).toBe(1);
    // The reply goes on without its caller while the client reconnects.
    await until(() => ptt.state === "reconnecting", "the channel to notice the drop");
    expect(server.core.replies.inFlight).toBe(1);

    const status = await reply.done;
    await iterate;
    expect(status.error).toBeUndefined();
    expect(status.endMessage).toBe("RESPONSE_COMPLETED");
    // Every sentence exactly once, in order: nothing lost at the drop, nothing repeated.
    expect(partsText(parts)).toBe(spoken);
    expect(parts).toHaveLength(50);
    expect(server.core.metrics.workflowRuns - runsBefore).toBe(1);
    expect((server.core.metrics.commits.get("ok") ?? 0) - okBefore).toBe(1);
    expect((server.core.metrics.resumes.get("ok") ?? 0) - resumedBefore).toBe(1);
    expect(status.metadata.get("ptt-turn-id")).toMatch(/^[0-9a-f-]{36}$/);

    // The session was consumed exactly once: committing it again is already_exists.
    const end = await new Promise<Pick<CallEnd, "code" | "message">>((resolve) => {
      ptt.channel.call(
        {
          case: "streamAudio",
          value: {
            hardwareId: ptt.hardwareId,
            sessionId: hold.sessionId,
            phase: RequestPhase.COMMIT,
          },
        },
        { resend: false, onFrame: () => {}, onEnd: resolve },
      );
    });
    expect(end.code).toBe("already_exists");
    expect(end.message).toBe(`session ${hold.sessionId} is already committed`);
  }, 15_000);
});
