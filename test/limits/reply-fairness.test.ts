// Issue 11 #3: one connection that stops reading must not hold every reply slot. Slots are
// shared per device and per connection, and a reply whose reader takes nothing for
// reply_stall_ms is ended and its slot freed, on every transport of the Node server: gRPC
// (fast path) under a zero HTTP/2 flow-control window, Connect over HTTP/1.1 from a socket
// that never reads, and a bridge socket that stops reading.
import * as http2 from "node:http2";
import * as net from "node:net";
import { create, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ReplyPart, Workflow } from "../../src/core/ports.js";
import { StreamRequestSchema } from "../../src/gen/streaming_pb.js";
import { type NodeServer, startNodeServer } from "../../src/runtimes/node/server.js";
import { RawBridge, stream } from "../bridge/raw-bridge.js";
import { cancel, commit, newDevice, newSession, type Req } from "../contract/calls.js";
import { envelope, grpcRaw, SA } from "../support/raw-rpc.js";

const STALL_MS = 600;
const AUDIO = new Uint8Array(64 * 1024);

/**
 * "endless": 64 KiB audio frames for as long as the reply runs (a reader that stops reading
 * parks it at once); "hold": one sentence, then nothing until stopped; else: the text back.
 */
const workflow: Workflow = async function* (turn, signal): AsyncGenerator<ReplyPart> {
  if (turn.text === "endless") {
    while (!signal.aborted) {
      yield { kind: "audio", data: AUDIO, dtype: "int16", sampleRate: 16000, channels: 1 };
      await new Promise((r) => setImmediate(r));
    }
    return;
  }
  yield { kind: "text", text: turn.text };
  if (turn.text !== "hold") return;
  await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
};

const commitReq = (hw: string, prompt: string): Req => commit(hw, newSession(), { prompt }) as Req;
const grpcBody = (req: Req) =>
  envelope(toBinary(StreamRequestSchema, create(StreamRequestSchema, req)));

async function until(what: string, pred: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("reply slots under readers that stop reading (issue 11 #3)", () => {
  let server: NodeServer;
  beforeAll(async () => {
    server = await startNodeServer({
      port: 0,
      config: {
        workflow,
        bargeIn: "off",
        // A quarter of 8: two replies per connection; three per device.
        limits: { maxConcurrentReplies: 8, maxRepliesPerDevice: 3, replyStallMs: STALL_MS },
      },
    });
  });
  afterAll(() => server.close(0));
  const inFlight = () => server.core.replies.inFlight;

  it("a connection with a zero HTTP/2 window holds its share only, and its stalled replies end", async () => {
    const session = http2.connect(server.url, { settings: { initialWindowSize: 0 } });
    session.on("error", () => {});
    const closed: Promise<number>[] = [];
    for (let i = 0; i < 6; i++) {
      const req = session.request({
        ":method": "POST",
        ":path": SA,
        "content-type": "application/grpc",
        te: "trailers",
      });
      req.on("error", () => {});
      closed.push(new Promise((resolve) => req.on("close", () => resolve(req.rstCode ?? 0))));
      req.end(grpcBody(commitReq(newDevice(), "endless")));
    }
    // Two run (the connection's share), four were refused; none of them can be read.
    await until("two replies running", () => inFlight() === 2);
    await new Promise((r) => setTimeout(r, 100));
    expect(inFlight()).toBe(2);

    // Every other device is still served meanwhile, on its own connection.
    const other = await grpcRaw(server.url, grpcBody(commitReq(newDevice(), "still served")));
    expect(other.status).toBe("0");
    expect(other.frames.find((f) => f.case === "textChunk")?.value).toBe("still served");

    // The stalled replies are reset with ENHANCE_YOUR_CALM (RESOURCE_EXHAUSTED to gRPC
    // clients) after reply_stall_ms, and their slots are free again.
    const started = Date.now();
    await until("the stalled replies to end", () => inFlight() === 0);
    expect(Date.now() - started).toBeLessThan(10_000);
    const codes = await Promise.race([
      Promise.all(closed.slice(0, 2)),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error("no reset")), 10_000)),
    ]);
    expect(codes).toEqual([
      http2.constants.NGHTTP2_ENHANCE_YOUR_CALM,
      http2.constants.NGHTTP2_ENHANCE_YOUR_CALM,
    ]);
    session.destroy();
  }, 30_000);

  it("one device holds at most max_replies_per_device; the refusal names the limit", async () => {
    const hw = newDevice();
    const sessions = [newSession(), newSession(), newSession()];
    const holds = sessions.map((sid) =>
      grpcRaw(server.url, grpcBody(commit(hw, sid, { prompt: "hold" }) as Req)),
    );
    await until("three replies running", () => inFlight() === 3);
    const refused = await grpcRaw(server.url, grpcBody(commitReq(hw, "refused")));
    expect(refused.status).toBe("8");
    expect(refused.message).toMatch(/^max_replies_per_device: /);
    // Another device is not affected.
    const other = await grpcRaw(server.url, grpcBody(commitReq(newDevice(), "fine")));
    expect(other.status).toBe("0");
    for (const sid of sessions) {
      expect((await grpcRaw(server.url, grpcBody(cancel(hw, sid) as Req))).status).toBe("0");
    }
    for (const r of await Promise.all(holds)) expect(r.status).toBe("1");
    await until("slots back", () => inFlight() === 0);
  }, 30_000);

  it("Connect over HTTP/1.1: a socket that never reads is closed after reply_stall_ms", async () => {
    const body = envelope(
      toBinary(StreamRequestSchema, create(StreamRequestSchema, commitReq(newDevice(), "endless"))),
    );
    const socket = net.connect(server.port, "127.0.0.1");
    socket.on("error", () => {});
    const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    socket.write(
      `POST ${SA} HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\n` +
        `Content-Type: application/connect+proto\r\nContent-Length: ${body.length}\r\n\r\n`,
    );
    socket.write(body);
    socket.pause();
    await until("the reply running", () => inFlight() === 1);
    await until("the stalled reply to end", () => inFlight() === 0);
    // The server closed the connection: reading again, the client finds the end of it.
    socket.on("data", () => {});
    socket.resume();
    await closed;
  }, 30_000);

  it("a bridge socket that stops reading: its replies end RESOURCE_EXHAUSTED reply_stall_ms", async () => {
    const bridge = await RawBridge.open(`${server.url.replace(/^http/, "ws")}/v1/bridge`);
    const socket = (bridge.ws as unknown as { _socket: net.Socket })._socket;
    socket.pause();
    bridge.send(1, stream(commitReq(newDevice(), "endless")));
    bridge.send(2, stream(commitReq(newDevice(), "endless")));
    await until("two replies running", () => inFlight() === 2);
    const other = await grpcRaw(server.url, grpcBody(commitReq(newDevice(), "still served")));
    expect(other.status).toBe("0");
    await until("the stalled replies to end", () => inFlight() === 0);
    socket.resume();
    for (const id of [1, 2]) {
      const end = await bridge.end(id, 1, 20_000);
      expect(end.code).toBe("resource_exhausted");
      expect(end.message).toMatch(/^reply_stall_ms: /);
    }
    // The socket is still usable once read again.
    const { end } = await bridge.run(3, stream(commitReq(newDevice(), "after")));
    expect(end.code).toBe("");
    bridge.ws.close();
  }, 30_000);
});
