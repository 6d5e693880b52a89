import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import {
  type ChannelState,
  connect,
  type Ptt,
  type ReplyPart,
  type WebSocketFactory,
} from "../../src/bridge/client/index.js";
import { type NodeServer, startNodeServer } from "../../src/runtimes/node/server.js";
import { newDevice } from "../contract/calls.js";
import { partsText } from "../support/reply-parts.js";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.js";
import { sleep, until } from "../support/wait.js";

// docs/protocol.md §6, liveness: a bridge connection that dies silently (no FIN, no RST) sends
// no close event to a browser, so the client library probes it with a Ping while a call runs.
// The proxy keeps the TCP connection open and forwards nothing (stallReplies: the server's
// frames; blackhole: both ways), as a closed laptop lid or a phone leaving Wi-Fi does.

/** Echo workflow: one sentence per reply frame, this far apart. */
const ECHO_DELAY_MS = 100;
/** Client timings: short, so that a test takes a second or two; the timeout is generous. */
const LIVENESS_MS = 50;
const LIVENESS_TIMEOUT_MS = 1000;
/** A ClientFrame { ping } in a masked ws frame: 2 bytes of header, 4 of mask, 2 of payload. */
const PING_WIRE_BYTES = 8;

describe("bridge liveness (client library through a TCP proxy that goes silent)", () => {
  let server: NodeServer;
  let proxy: TcpProxy;
  const clients: Ptt[] = [];

  beforeAll(async () => {
    server = await startNodeServer({
      port: 0,
      config: { echoDelayMs: ECHO_DELAY_MS },
      graceMs: 0,
    });
  });
  // A proxy per test: a silenced connection stays open in the proxy until it is closed.
  beforeEach(async () => {
    proxy = await startTcpProxy({ host: "127.0.0.1", port: server.port });
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await proxy.close();
  });
  afterAll(async () => {
    await server.close(0);
  });

  function client(states: ChannelState[] = [], livenessTimeoutMs = LIVENESS_TIMEOUT_MS): Ptt {
    const ptt = connect(proxy.wsUrl("/v1/bridge"), {
      hardwareId: newDevice("live"),
      WebSocket: WebSocket as unknown as WebSocketFactory,
      minBackoffMs: 20,
      maxBackoffMs: 80,
      livenessMs: LIVENESS_MS,
      livenessTimeoutMs,
      onState: (s) => states.push(s),
    });
    clients.push(ptt);
    return ptt;
  }

  it.each(["stallReplies", "blackhole"] as const)(
    "%s mid-reply: the client notices, reconnects, and the reply resumes: each part once, the workflow ran once",
    async (how) => {
      const states: ChannelState[] = [];
      const ptt = client(states);
      await ptt.channel.ready();
      const hold = ptt.hold({ mode: "delta" });
      const spoken = "one. two. three. four. five. six. seven. eight. ";
      await hold.text(spoken);
      const runsBefore = server.core.metrics.workflowRuns;
      const resumedBefore = server.core.metrics.resumes.get("ok") ?? 0;
      const acceptedBefore = proxy.accepted;

      const reply = await hold.release();
      const parts: ReplyPart[] = [];
      const iterate = (async () => {
        for await (const part of reply) parts.push(part);
      })();
      await until(() => parts.length >= 2, "two reply parts");
      expect(proxy[how]()).toBe(1);
      const silentAt = performance.now();
      // No close event comes: only the missing answer to a Ping tells the client.
      await until(() => ptt.state === "reconnecting", "the client to give the silent socket up");
      const noticedMs = performance.now() - silentAt;

      const status = await reply.done;
      await iterate;
      expect(status.error).toBeUndefined();
      expect(status.endMessage).toBe("RESPONSE_COMPLETED");
      expect(partsText(parts)).toBe(spoken);
      expect(parts).toHaveLength(8);
      expect(server.core.metrics.workflowRuns - runsBefore).toBe(1);
      expect((server.core.metrics.resumes.get("ok") ?? 0) - resumedBefore).toBe(1);
      expect(proxy.accepted - acceptedBefore).toBe(1);
      expect(states.at(-1)).toBe("open");
      // Noticed after about LIVENESS_MS + LIVENESS_TIMEOUT_MS (a bound loose enough for a loaded
      // machine; without the probe it is never).
      expect(noticedMs).toBeLessThan(LIVENESS_MS + LIVENESS_TIMEOUT_MS + 4000);
    },
    20_000,
  );

  it("a reply quieter than livenessMs on a healthy connection: Pings answered, no reconnect", async () => {
    const states: ChannelState[] = [];
    // Nothing here waits for the timeout: a long one keeps a loaded machine from failing it.
    const ptt = client(states, 5000);
    await ptt.channel.ready();
    const hold = ptt.hold({ mode: "delta" });
    await hold.text("one. two. three. four. five. ");
    const acceptedBefore = proxy.accepted;
    const reply = await hold.release();
    const parts: ReplyPart[] = [];
    let upAtFirstPart = Number.NaN;
    for await (const part of reply) {
      parts.push(part);
      // The COMMIT has passed the proxy: from here on the client sends nothing but Pings.
      if (parts.length === 1) upAtFirstPart = proxy.bytesToTarget;
    }
    const pingBytes = proxy.bytesToTarget - upAtFirstPart;
    expect((await reply.done).error).toBeUndefined();
    expect(parts).toHaveLength(5);
    // Frames 100 ms apart, probed after 50 ms of quiet: about one Ping per gap.
    expect(pingBytes).toBeGreaterThan(0);
    expect(pingBytes % PING_WIRE_BYTES).toBe(0);
    expect(proxy.accepted).toBe(acceptedBefore);
    expect(states).not.toContain("reconnecting");
  });

  it("an idle connection is never probed; a silent one is found dead by the next call", async () => {
    const ptt = client();
    await ptt.channel.ready();
    const hold = ptt.hold({ mode: "delta" });
    expect((await hold.text("hello ")).outcome).toBe("accepted");
    const up = proxy.bytesToTarget;
    const down = proxy.bytesToClient;
    // Ten intervals with no call running: not a byte either way.
    await sleep(10 * LIVENESS_MS);
    expect(proxy.bytesToTarget).toBe(up);
    expect(proxy.bytesToClient).toBe(down);

    // The connection dies while idle; nothing notices until a call needs it.
    const acceptedBefore = proxy.accepted;
    expect(proxy.blackhole()).toBe(1);
    await sleep(5 * LIVENESS_MS);
    expect(ptt.state).toBe("open");
    // The chunk's ack never comes on the dead socket: the client gives it up and resends the
    // chunk on a new connection.
    const ack = await hold.text("again ");
    expect(ack).toMatchObject({ seq: 2, outcome: "accepted" });
    expect(proxy.accepted - acceptedBefore).toBe(1);
    const reply = await hold.release();
    const parts: ReplyPart[] = [];
    for await (const part of reply) parts.push(part);
    expect(partsText(parts)).toBe("hello again ");
  }, 20_000);
});
