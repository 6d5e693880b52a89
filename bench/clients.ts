// The bench's own clients, for what h2load cannot do: one call at a time round trips (gRPC
// over raw node:http2, the WebSocket bridge, a raw ws echo), COMMIT -> first reply frame, and
// the memory held by idle sessions and idle bridge sockets.
import * as http2 from "node:http2";
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { WebSocket } from "ws";
import { ClientFrameSchema, ServerFrameSchema } from "../src/gen/bridge_pb.js";
import { ChunkMode, RequestPhase, StreamRequestSchema } from "../src/gen/streaming_pb.js";

export const STREAM_AUDIO = "/streaming.StreamingService/StreamAudio";
/** Calls made before each block of timed calls, not counted. */
const WARMUP = 30;
let blocks = 0;

type Req = MessageInitShape<typeof StreamRequestSchema>;

export function framed(req: Req): Uint8Array {
  const bytes = toBinary(StreamRequestSchema, create(StreamRequestSchema, req));
  const out = new Uint8Array(5 + bytes.byteLength);
  new DataView(out.buffer).setUint32(1, bytes.byteLength);
  out.set(bytes, 5);
  return out;
}

/** A COLLECT as old clients send it: unsequenced (seq 0), mode UNSPECIFIED. */
export function collectReq(hardwareId: string, sessionId: string, text: string, seq = 0): Req {
  return {
    hardwareId,
    sessionId,
    phase: RequestPhase.COLLECT,
    chunkSeq: seq,
    chunkText: text,
    chunkMode: ChunkMode.UNSPECIFIED,
  };
}

export interface CallTiming {
  /** Request sent -> first DATA frame of the response, µs. */
  firstUs: number;
  /** Request sent -> stream closed, µs. */
  totalUs: number;
  trailers: Record<string, unknown>;
}

/** One gRPC call over an open HTTP/2 session, timed. */
export function grpcCall(session: http2.ClientHttp2Session, body: Uint8Array): Promise<CallTiming> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let first = -1;
    let trailers: Record<string, unknown> = {};
    const req = session.request({
      ":method": "POST",
      ":path": STREAM_AUDIO,
      "content-type": "application/grpc",
      te: "trailers",
    });
    req.on("data", () => {
      if (first < 0) first = performance.now();
    });
    req.on("trailers", (t) => {
      trailers = t;
    });
    req.on("error", reject);
    req.on("close", () => {
      const end = performance.now();
      resolve({
        firstUs: ((first < 0 ? end : first) - t0) * 1000,
        totalUs: (end - t0) * 1000,
        trailers,
      });
    });
    req.end(body);
  });
}

export function h2session(port: number): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = http2.connect(`http://127.0.0.1:${port}`);
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

/**
 * Sequential COLLECT acks over one connection, round-trip times in µs. The caller keeps the
 * connection for the whole run: Deno's node:http2 has aborted on a GOAWAY (an nghttp2 assertion),
 * so the bench closes connections to a server only when it is done with it.
 */
export async function collectRoundTrips(s: http2.ClientHttp2Session, n: number): Promise<number[]> {
  // A device per block: each block holds one more session open (8 per device at most).
  const body = framed(collectReq(`bench-rtt-${++blocks}`, crypto.randomUUID(), "hello world"));
  const out: number[] = [];
  for (let i = 0; i < n + WARMUP; i++) {
    const t = await grpcCall(s, body);
    if (t.trailers["grpc-status"] !== "0") {
      throw new Error(`COLLECT failed: ${JSON.stringify(t.trailers)}`);
    }
    if (i >= WARMUP) out.push(t.totalUs);
  }
  return out;
}

/**
 * COMMIT -> first reply frame, one turn at a time: each turn is a new session, one COLLECT, then
 * the timed COMMIT. A bare server gets the same two calls and answers each with its canned ack.
 */
export async function commitFirstFrames(s: http2.ClientHttp2Session, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n + WARMUP; i++) {
    const hw = `bench-echo-${i % 64}`;
    const sid = crypto.randomUUID();
    await grpcCall(s, framed(collectReq(hw, sid, "hello there, how are you")));
    const commit = framed({ hardwareId: hw, sessionId: sid, phase: RequestPhase.COMMIT });
    const t = await grpcCall(s, commit);
    if (t.trailers["grpc-status"] !== "0") {
      throw new Error(`COMMIT failed: ${JSON.stringify(t.trailers)}`);
    }
    if (i >= WARMUP) out.push(t.firstUs);
  }
  return out;
}

/** A WebSocket whose messages queue up from the start (a Hello may arrive with the upgrade). */
interface Socket {
  ws: WebSocket;
  queue: Buffer[];
  wake: (() => void) | undefined;
}

function openSocket(url: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const sock: Socket = { ws, queue: [], wake: undefined };
    ws.binaryType = "nodebuffer";
    ws.on("message", (data: Buffer) => {
      sock.queue.push(data);
      sock.wake?.();
    });
    ws.once("open", () => resolve(sock));
    ws.once("error", reject);
  });
}

/** Resolves with the next `count` messages of a socket. */
async function nextMessages(sock: Socket, count: number): Promise<Buffer[]> {
  while (sock.queue.length < count) {
    await new Promise<void>((resolve) => {
      sock.wake = resolve;
    });
  }
  sock.wake = undefined;
  return sock.queue.splice(0, count);
}

/** The ClientFrame of a bridge COLLECT (call id 1: each call ends before the next starts). */
export function bridgeFrame(): Uint8Array {
  return toBinary(
    ClientFrameSchema,
    create(ClientFrameSchema, {
      callId: 1,
      body: {
        case: "streamAudio",
        value: collectReq("bench-bridge", crypto.randomUUID(), "hello world"),
      },
    }),
  );
}

/** Bridge COLLECT acks one at a time: send -> the call's CallEnd, µs. */
export async function bridgeRoundTrips(
  port: number,
  frame: Uint8Array,
  n: number,
): Promise<number[]> {
  const ws = await openSocket(`ws://127.0.0.1:${port}/v1/bridge`);
  await nextMessages(ws, 1); // Hello
  // Check once that an ack is two frames: the COLLECT_ACCEPTED response, then an OK CallEnd.
  ws.ws.send(frame);
  const [res, end] = (await nextMessages(ws, 2)).map((b) => fromBinary(ServerFrameSchema, b));
  if (res?.body.case !== "response" || end?.body.case !== "end" || end.body.value.code !== "") {
    throw new Error(`unexpected bridge ack: ${JSON.stringify([res?.body, end?.body])}`);
  }
  const us: number[] = [];
  for (let i = 0; i < n + 200; i++) {
    const t0 = performance.now();
    ws.ws.send(frame);
    await nextMessages(ws, 2);
    if (i >= 200) us.push((performance.now() - t0) * 1000);
  }
  ws.ws.close();
  return us;
}

/** The same bytes through a raw ws echo server, one at a time, µs. */
export async function wsEchoRoundTrips(
  port: number,
  frame: Uint8Array,
  n: number,
): Promise<number[]> {
  const ws = await openSocket(`ws://127.0.0.1:${port}/`);
  const us: number[] = [];
  for (let i = 0; i < n + 200; i++) {
    const t0 = performance.now();
    ws.ws.send(frame);
    await nextMessages(ws, 1);
    if (i >= 200) us.push((performance.now() - t0) * 1000);
  }
  ws.ws.close();
  return us;
}

/** Opens `n` bridge sockets and waits for each one's Hello; they stay open and idle. */
export async function openBridgeSockets(port: number, n: number): Promise<WebSocket[]> {
  const sockets: WebSocket[] = [];
  for (let i = 0; i < n; i += 100) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(100, n - i) }, async () => {
        const sock = await openSocket(`ws://127.0.0.1:${port}/v1/bridge`);
        await nextMessages(sock, 1);
        return sock.ws;
      }),
    );
    sockets.push(...batch);
  }
  return sockets;
}

/** Opens `n` held sessions (one COLLECT each, each on its own device), 64 calls in flight. */
export async function holdSessions(port: number, n: number, text: string): Promise<void> {
  const s = await h2session(port);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      const t = await grpcCall(
        s,
        framed(collectReq(`bench-hold-${i}`, crypto.randomUUID(), text, 1)),
      );
      if (t.trailers["grpc-status"] !== "0")
        throw new Error(`hold ${i}: ${JSON.stringify(t.trailers)}`);
    }
  };
  try {
    await Promise.all(Array.from({ length: 64 }, worker));
  } finally {
    s.close();
  }
}
