import { fromBinary } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import {
  type BridgeConnection,
  type BridgeOptions,
  createBridgeHandlers,
} from "../../src/bridge/server/bridge-connection.js";
import { BridgeHub } from "../../src/bridge/server/bridge-hub.js";
import type { BridgeSocket } from "../../src/bridge/server/socket-port.js";
import { createPttCore, type PttCore } from "../../src/core/ptt-core.js";
import { type CallEnd, type ServerFrame, ServerFrameSchema } from "../../src/gen/bridge_pb.js";
import { newDevice, newSession } from "../contract/calls.js";
import {
  type CallLog,
  collectBody,
  commitBody,
  encode,
  lastContent,
  sleep,
  textOf,
} from "./raw-bridge.js";

// BridgeConnection's backpressure in process, over a scripted BridgeSocket: what a binding
// offers (a drain signal, pausing, a send that may drop) decides how the limits hold.

/** A runtime's WebSocket whose client reads only when told to. */
class FakeSocket implements BridgeSocket {
  readonly frames: ServerFrame[] = [];
  buffered = 0;
  reading = true;
  drop = false;
  closedWith: { code: number; reason: string } | undefined;
  pauses = 0;
  resumes = 0;
  conn!: BridgeConnection;
  drainSignal?: boolean;
  pauseReading?: () => void;
  resumeReading?: () => void;

  constructor(kind: { drainSignal?: boolean; pausable?: boolean } = {}) {
    this.drainSignal = kind.drainSignal;
    if (kind.pausable) {
      this.pauseReading = () => void this.pauses++;
      this.resumeReading = () => void this.resumes++;
    }
  }

  send(data: Uint8Array): boolean {
    if (this.drop) return false;
    this.frames.push(fromBinary(ServerFrameSchema, data));
    if (!this.reading) this.buffered += data.byteLength;
    return true;
  }

  close(code: number, reason: string): void {
    this.closedWith ??= { code, reason };
  }

  bufferedAmount(): number {
    return this.buffered;
  }

  /** The client reads everything: the buffer empties (a drain event, if the runtime has one). */
  read(): void {
    this.reading = true;
    this.buffered = 0;
    if (this.drainSignal) this.conn.drained();
  }

  call(id: number): CallLog {
    const log: CallLog = { frames: [], ends: [] };
    for (const f of this.frames) {
      if (f.callId !== id) continue;
      if (f.body.case === "end") log.ends.push(f.body.value);
      else log.frames.push(f.body);
    }
    return log;
  }

  async end(id: number, ms = 2000): Promise<CallEnd> {
    const t0 = performance.now();
    while (this.call(id).ends.length === 0) {
      if (performance.now() - t0 > ms) throw new Error(`no CallEnd for call ${id} in ${ms} ms`);
      await sleep(2);
    }
    return this.call(id).ends[0] as CallEnd;
  }
}

const cores: PttCore[] = [];
afterEach(() => {
  cores.length = 0;
});

function setup(
  socket: FakeSocket,
  options: Partial<BridgeOptions> = {},
  echoDelayMs = 0,
): { hub: BridgeHub; conn: BridgeConnection; core: PttCore } {
  // No resume window: a call the socket cancels stops its reply at once, so slots can be counted.
  const core = createPttCore({ echoDelayMs, resumeWindowMs: 0 });
  cores.push(core);
  const hub = new BridgeHub(
    createBridgeHandlers(core, { highWaterMark: 1000, drainPollMs: 5, ...options }),
  );
  const conn = hub.connect(
    { protocol: undefined, headers: new Headers(), url: "http://localhost/v1/bridge" },
    socket,
  );
  socket.conn = conn;
  return { hub, conn, core };
}

/** A session of `sentences` sentences of ~100 bytes: one text_chunk frame each. */
async function heldSession(socket: FakeSocket, conn: BridgeConnection, sentences: number) {
  const hw = newDevice("flow");
  const sid = newSession();
  const text = `${"w".repeat(98)}. `.repeat(sentences);
  conn.receive(encode(1, collectBody(hw, sid, 1, text)));
  expect((await socket.end(1)).code).toBe("");
  return { hw, sid, text };
}

const frameCount = (socket: FakeSocket, id: number) => socket.call(id).frames.length;

describe("bridge flow control (BridgeConnection over a scripted socket)", () => {
  it("no drain signal (Deno): a parked reply wakes by polling once the client reads", async () => {
    const socket = new FakeSocket();
    const { conn } = setup(socket);
    const { hw, sid, text } = await heldSession(socket, conn, 40);
    socket.reading = false;
    conn.receive(encode(2, commitBody(hw, sid)));
    await sleep(60);
    const parkedAt = frameCount(socket, 2);
    expect(parkedAt).toBeGreaterThan(0);
    expect(parkedAt).toBeLessThan(20); // ~1000 bytes of 100-byte frames, then it waits
    expect(socket.call(2).ends).toHaveLength(0);
    await sleep(30);
    expect(frameCount(socket, 2)).toBe(parkedAt);

    socket.buffered = 0; // read by the client; no drained() call: only the poll can see it
    socket.reading = true;
    const end = await socket.end(2);
    expect(end.code).toBe("");
    expect(textOf(socket.call(2))).toBe(text);
    expect(lastContent(socket.call(2))).toEqual({
      case: "endMessage",
      value: "RESPONSE_COMPLETED",
    });
  });

  it("cannot pause: calls past max_running_calls get CallEnd resource_exhausted; the running ones finish", async () => {
    const socket = new FakeSocket({ drainSignal: true });
    const { conn } = setup(socket, { maxRunningCalls: 3 });
    const hw = newDevice("flow");
    const sid = newSession();
    socket.buffered = 5000; // not read: every answer waits
    socket.reading = false;
    for (let id = 1; id <= 5; id++) conn.receive(encode(id, collectBody(hw, sid, id, `c${id} `)));
    for (const id of [4, 5]) {
      const end = await socket.end(id);
      expect(end.code).toBe("resource_exhausted");
      expect(end.message).toMatch(/^max_running_calls: 3 calls already run on this socket/);
    }
    await sleep(30);
    expect(conn.runningCalls).toBe(3);
    for (const id of [1, 2, 3]) expect(socket.call(id).ends).toHaveLength(0);
    socket.read();
    for (const id of [1, 2, 3]) {
      const end = await socket.end(id);
      expect(end.code).toBe("");
      expect(end.metadata["ptt-collect"]).toBe("accepted");
    }
    for (let id = 1; id <= 5; id++) expect(socket.call(id).ends).toHaveLength(1);
    expect(socket.closedWith).toBeUndefined();
  });

  it("cannot pause: frames past max_running_bytes are refused, and accepted once calls end", async () => {
    const socket = new FakeSocket();
    const { conn } = setup(socket, { maxRunningBytes: 3000 });
    const hw = newDevice("flow");
    const sid = newSession();
    socket.buffered = 5000;
    socket.reading = false;
    const big = (seq: number) => encode(seq, collectBody(hw, sid, seq, "x".repeat(1100)));
    for (let id = 1; id <= 4; id++) conn.receive(big(id));
    for (const id of [3, 4]) {
      const end = await socket.end(id);
      expect(end.code).toBe("resource_exhausted");
      expect(end.message).toMatch(/^max_running_bytes: /);
      expect(end.message).toContain("3000");
    }
    expect(conn.runningCalls).toBe(2);
    socket.buffered = 0;
    socket.reading = true;
    for (const id of [1, 2]) expect((await socket.end(id)).code).toBe("");
    // Room again: the refused chunks are accepted when resent.
    conn.receive(big(3));
    await sleep(20);
    const resent = socket.call(3).ends;
    expect(resent).toHaveLength(2);
    expect(resent[1]?.code).toBe("");
  });

  it("a client that sends while max_buffered_bytes wait unread is closed with 1013", async () => {
    const socket = new FakeSocket();
    const { conn, core } = setup(socket, { maxBufferedBytes: 4000 });
    const { hw, sid } = await heldSession(socket, conn, 40);
    socket.reading = false;
    conn.receive(encode(2, commitBody(hw, sid)));
    await sleep(20);
    expect(core.replies.inFlight).toBe(1);
    // Every frame is answered, if only by a CallEnd: invalid ones grow the buffer too.
    let id = 100;
    while (socket.closedWith === undefined && id < 10_000) {
      conn.receive(encode(++id, { case: undefined }));
    }
    expect(socket.closedWith?.code).toBe(1013);
    expect(socket.closedWith?.reason).toContain("4000");
    expect(socket.buffered).toBeLessThan(4000 + 200);
    // Closing cancelled the parked reply: its slot is free.
    await sleep(20);
    expect(core.replies.inFlight).toBe(0);
  });

  it("a frame the runtime drops (Bun's send() → 0) closes the socket with 1013 and cancels its calls", async () => {
    const socket = new FakeSocket({ drainSignal: true, pausable: true });
    const { conn, core } = setup(socket, {}, 20);
    const { hw, sid } = await heldSession(socket, conn, 10);
    conn.receive(encode(2, commitBody(hw, sid)));
    await sleep(30);
    expect(frameCount(socket, 2)).toBeGreaterThan(0);
    socket.drop = true;
    await sleep(50);
    expect(socket.closedWith?.code).toBe(1013);
    expect(conn.runningCalls).toBe(0);
    expect(core.replies.inFlight).toBe(0);
  });

  it("a binding that can pause (ws, Bun) is paused at the limits instead of refusing, and resumed", async () => {
    const socket = new FakeSocket({ drainSignal: true, pausable: true });
    const { conn } = setup(socket, { maxRunningCalls: 2 });
    const hw = newDevice("flow");
    const sid = newSession();
    socket.buffered = 5000;
    socket.reading = false;
    for (let id = 1; id <= 3; id++) conn.receive(encode(id, collectBody(hw, sid, id, `c${id} `)));
    await sleep(20);
    expect(socket.pauses).toBe(1);
    expect(conn.runningCalls).toBe(3); // frames already read still run: none is refused
    socket.read();
    for (let id = 1; id <= 3; id++) expect((await socket.end(id)).code).toBe("");
    expect(socket.resumes).toBe(1);
  });

  describe("shutdown (BridgeHub)", () => {
    it("stopAccepting: new calls get CallEnd unavailable; the running reply completes, then 1001", async () => {
      const socket = new FakeSocket({ drainSignal: true, pausable: true });
      const { hub, conn } = setup(socket, {}, 10);
      const { hw, sid, text } = await heldSession(socket, conn, 10);
      conn.receive(encode(2, commitBody(hw, sid)));
      await sleep(15);
      hub.stopAccepting();
      conn.receive(encode(3, collectBody(newDevice(), newSession(), 1, "late")));
      const refused = await socket.end(3);
      expect(refused.code).toBe("unavailable");
      expect(refused.message).toContain("shutting down");
      expect(socket.call(2).ends).toHaveLength(0);

      const closed = hub.close(5000);
      expect(socket.closedWith).toBeUndefined();
      await closed;
      expect(socket.closedWith?.code).toBe(1001);
      expect((await socket.end(2)).code).toBe("");
      expect(textOf(socket.call(2))).toBe(text);
      // The close came after the reply's CallEnd, the last frame sent.
      expect(socket.frames.at(-1)?.body.case).toBe("end");
      expect(socket.frames.at(-1)?.callId).toBe(2);
      expect(hub.size).toBe(0);
    });

    it("close(waitMs): a call still parked then is cancelled and the socket closed", async () => {
      const socket = new FakeSocket({ drainSignal: true, pausable: true });
      const { hub, conn, core } = setup(socket);
      const { hw, sid } = await heldSession(socket, conn, 40);
      socket.reading = false;
      conn.receive(encode(2, commitBody(hw, sid)));
      await sleep(20);
      const t0 = performance.now();
      await hub.close(50);
      expect(performance.now() - t0).toBeGreaterThanOrEqual(45);
      expect(socket.closedWith?.code).toBe(1001);
      await sleep(10);
      expect(core.replies.inFlight).toBe(0);
    });
  });
});
