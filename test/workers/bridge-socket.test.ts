import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { ServerFrame } from "../../src/gen/bridge_pb.js";
import type { StreamResponse } from "../../src/gen/streaming_pb.js";
import {
  BridgeSocket,
  collect,
  commit,
  eventually,
  IDLE_TTL_MS,
  newDevice,
  recordKey,
  replyText,
  stored,
  swapInFreshInstance,
} from "./helpers.js";

function responses(frames: ServerFrame[]): StreamResponse["content"][] {
  return frames.flatMap((f) => (f.body.case === "response" ? [f.body.value.content] : []));
}

function callEnd(frame: ServerFrame) {
  if (frame.body.case !== "end") throw new Error(`expected a CallEnd, got ${frame.body.case}`);
  return frame.body.value;
}

/** Hello, then two COLLECTs acked on calls 1 and 2. */
async function openAndCollect(hw: string, sid: string): Promise<BridgeSocket> {
  const socket = await BridgeSocket.open(hw);
  const hello = await socket.next();
  expect(hello.callId).toBe(0);
  expect(hello.body.case).toBe("hello");
  if (hello.body.case === "hello") {
    expect(hello.body.value.protocolVersion).toBe(1);
    expect(hello.body.value.limits.idle_ttl_ms).toBe(BigInt(IDLE_TTL_MS));
  }
  for (const [callId, text] of [
    [1, "over the "],
    [2, "socket"],
  ] as const) {
    socket.streamAudio(callId, collect(hw, sid, callId, text));
    const { frames, end } = await socket.call(callId);
    expect(responses(frames)).toEqual([{ case: "endMessage", value: "COLLECT_ACCEPTED" }]);
    expect(callEnd(end)).toMatchObject({ code: "", message: "" });
    expect(callEnd(end).metadata).toMatchObject({
      "ptt-collect": "accepted",
      "ptt-last-seq": String(callId),
    });
  }
  return socket;
}

async function commitOn(socket: BridgeSocket, hw: string, sid: string, callId: number) {
  socket.streamAudio(callId, commit(hw, sid));
  const { frames, end } = await socket.call(callId);
  const reply = responses(frames);
  expect(replyText(reply)).toBe("over the socket");
  expect(reply.at(-1)).toEqual({ case: "endMessage", value: "RESPONSE_COMPLETED" });
  expect(frames.filter((f) => f.body.case === "end")).toHaveLength(1);
  const e = callEnd(end);
  expect(e.code).toBe("");
  expect(e.metadata["ptt-turn-id"]).toMatch(/^[0-9a-f-]{36}$/);
  expect(e.metadata["ptt-commit-ms"]).toMatch(/^\d+(\.\d+)?$/);
  expect((await stored(hw)).records.get(recordKey(hw, sid))?.state).toBe("committed");
}

// Bridge sockets are accepted by the device's object with the Hibernation API; the
// socket outlives the object's memory, so its connection is rebuilt from its attachment.
describe("hibernatable bridge sockets", () => {
  it("Hello, COLLECTs and a COMMIT over one socket through the Worker: reply frames, one CallEnd", async () => {
    const hw = newDevice("socket");
    const sid = crypto.randomUUID();
    const socket = await openAndCollect(hw, sid);
    await commitOn(socket, hw, sid, 3);
    socket.close();
  });

  it("the object loses its memory between COLLECT and COMMIT: the COMMIT still replies on the socket", async () => {
    const hw = newDevice("hibernated");
    const sid = crypto.randomUUID();
    const socket = await openAndCollect(hw, sid);
    // As after hibernation: a new instance with no connections, its store reloaded from storage.
    await swapInFreshInstance(hw);
    await commitOn(socket, hw, sid, 3);
    // The rebuilt connection runs further calls, and a reused running id is still refused.
    socket.streamAudio(4, commit(hw, sid));
    const dup = callEnd((await socket.call(4)).end);
    expect(dup).toMatchObject({
      code: "already_exists",
      message: `session ${sid} is already committed`,
    });
    expect(socket.closed).toBeUndefined();
    socket.close();
  });

  // docs/protocol.md §6: a liveness probe, answered by BridgeConnection itself, so the object
  // needs nothing of its own; a Ping after hibernation wakes it like any message.
  it("a Ping gets a Pong with its call_id, also after hibernation and beside a running reply", async () => {
    const hw = newDevice("ping");
    const sid = crypto.randomUUID();
    const socket = await openAndCollect(hw, sid);
    socket.send({ callId: 0, body: { case: "ping", value: {} } });
    expect(await socket.next()).toMatchObject({ callId: 0, body: { case: "pong" } });
    await swapInFreshInstance(hw);
    socket.send({ callId: 0, body: { case: "ping", value: {} } });
    expect(await socket.next()).toMatchObject({ callId: 0, body: { case: "pong" } });
    // A Ping carrying a running call's id is no new call: the COMMIT on 3 is neither refused
    // nor ended by it.
    socket.streamAudio(3, commit(hw, sid));
    socket.send({ callId: 3, body: { case: "ping", value: {} } });
    // The object's input gate may hold the Ping until the reply's storage writes are done
    // (its Pong then follows the CallEnd), so read until both came.
    const frames: ServerFrame[] = [];
    const has = (c: string) => frames.some((f) => f.body.case === c);
    while (!has("end") || !has("pong")) frames.push(await socket.next());
    expect(frames.every((f) => f.callId === 3)).toBe(true);
    expect(frames.filter((f) => f.body.case === "pong")).toHaveLength(1);
    const ends = frames.filter((f) => f.body.case === "end");
    expect(ends).toHaveLength(1);
    expect(callEnd(ends[0] as ServerFrame).code).toBe("");
    expect(replyText(responses(frames))).toBe("over the socket");
    socket.close();
  });

  it("a call for another device on the socket is forwarded to that device's object", async () => {
    const hw = newDevice("socket-owner");
    const other = newDevice("socket-other");
    const sid = crypto.randomUUID();
    const socket = await BridgeSocket.open(hw);
    expect((await socket.next()).body.case).toBe("hello");
    await swapInFreshInstance(hw);
    socket.streamAudio(1, collect(other, sid, 1, "elsewhere"));
    expect(callEnd((await socket.call(1)).end).metadata["ptt-collect"]).toBe("accepted");
    expect((await stored(other)).records.get(recordKey(other, sid))?.state).toBe("open");
    expect((await stored(hw)).records.size).toBe(0);
    socket.close();
  });

  it("plain /v1/bridge (no hardware_id): calls for two devices, each run by its own object", async () => {
    const [a, b] = [newDevice("plain-a"), newDevice("plain-b")];
    const [sa, sb] = [crypto.randomUUID(), crypto.randomUUID()];
    const socket = await BridgeSocket.open(null);
    expect((await socket.next()).body.case).toBe("hello");
    socket.streamAudio(1, collect(a, sa, 1, "for a."));
    expect(callEnd((await socket.call(1)).end).metadata["ptt-collect"]).toBe("accepted");
    socket.streamAudio(2, collect(b, sb, 1, "for b."));
    expect(callEnd((await socket.call(2)).end).metadata["ptt-collect"]).toBe("accepted");
    socket.streamAudio(3, commit(a, sa));
    const reply = await socket.call(3);
    const text = reply.frames.flatMap((f) =>
      f.body.case === "response" && f.body.value.content.case === "textChunk"
        ? [f.body.value.content.value]
        : [],
    );
    expect(text.join("")).toBe("for a.");
    expect(callEnd(reply.end).metadata["ptt-turn-id"]).toMatch(/^[0-9a-f-]{36}$/);
    expect((await stored(a)).records.get(recordKey(a, sa))?.state).toBe("committed");
    expect((await stored(b)).records.get(recordKey(b, sb))?.state).toBe("open");
    socket.close();
  });

  it("accepts an upgrade with a few KB of cookies, and rebuilds its connection after a swap", async () => {
    const hw = newDevice("cookies");
    const sid = crypto.randomUUID();
    const socket = await BridgeSocket.open(hw, { cookie: `session=${"x".repeat(4096)}` });
    expect((await socket.next()).body.case).toBe("hello");
    await swapInFreshInstance(hw);
    socket.streamAudio(1, collect(hw, sid, 1, "with cookies"));
    expect(callEnd((await socket.call(1)).end).code).toBe("");
    socket.close();
  });

  // Regression (was a defect): acceptSocket serialized every upgrade header (cookies
  // included) into the socket's attachment, which workerd caps at 16 KiB.
  it("accepts an upgrade with 20 KB of cookies (attachment over 16 KiB)", async () => {
    const hw = newDevice("big-cookies");
    const socket = await BridgeSocket.open(hw, { cookie: `session=${"x".repeat(20_000)}` });
    expect((await socket.next()).body.case).toBe("hello");
    socket.close();
  });

  // Regression (was a defect): the object picked ptt.bridge.v1 when any offer merely
  // contained it (a token, a look-alike version).
  it.each([
    ["a look-alike version", "ptt.bridge.v10", null],
    ["a token that contains it", "bearer.ptt.bridge.v1", null],
    ["a longer name", "x-ptt.bridge.v1", null],
    ["it among others", "chat, ptt.bridge.v1", "ptt.bridge.v1"],
  ])("subprotocol: %s (%s) is answered with %s", async (_what, offered, picked) => {
    const res = await SELF.fetch(
      `https://ptt.test/v1/bridge?hardware_id=${encodeURIComponent(newDevice("protocol"))}`,
      { headers: { upgrade: "websocket", "sec-websocket-protocol": offered } },
    );
    expect(res.status).toBe(101);
    expect(res.headers.get("sec-websocket-protocol")).toBe(picked);
    res.webSocket?.accept();
    res.webSocket?.close(1000, "done");
  });

  // Regression (was a defect): the Hibernation API does not answer a client's Close frame
  // for the object; webSocketClose must call ws.close(code, reason).
  it("answers the client's Close frame (the close handshake completes)", async () => {
    const socket = await BridgeSocket.open(newDevice("close"));
    expect((await socket.next()).body.case).toBe("hello");
    socket.close();
    await eventually(async () => socket.closed, "the server's Close frame", 500);
    expect(socket.closed?.code).toBe(1000);
  });
});
