import * as http2 from "node:http2";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { WebSocket } from "ws";
import { ClientFrameSchema, ServerFrameSchema } from "../../src/gen/bridge_pb.js";

/** What the server answered one fuzz input with: some status, whatever it was. */
export interface Answer {
  status: string;
}

/** Sends one body the way one transport carries it; rejects when no status comes back. */
export type Sender = (body: Uint8Array) => Promise<Answer>;

const STREAM_AUDIO = "/streaming.StreamingService/StreamAudio";
const INTERRUPT = "/streaming.StreamingService/InterruptSession";
const TIMEOUT_MS = 15_000;

function within<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no status in ${TIMEOUT_MS} ms: ${what}`)),
        TIMEOUT_MS,
      );
    }),
  ]);
}

/** gRPC over h2c: the answer is grpc-status, in the trailers or a trailers-only response. */
export function grpcSender(baseUrl: string): { send: Sender; close(): void } {
  let session: http2.ClientHttp2Session | undefined;
  const open = () => {
    if (!session || session.closed || session.destroyed) {
      session = http2.connect(baseUrl);
      session.on("error", () => {});
    }
    return session;
  };
  const send: Sender = (body) =>
    within(
      new Promise<Answer>((resolve, reject) => {
        const req = open().request({
          ":method": "POST",
          ":path": STREAM_AUDIO,
          "content-type": "application/grpc",
          te: "trailers",
        });
        let status: string | undefined;
        let httpStatus = 0;
        req.on("response", (headers) => {
          httpStatus = Number(headers[":status"]);
          if (headers["grpc-status"] !== undefined) status = String(headers["grpc-status"]);
        });
        req.on("trailers", (trailers) => {
          if (trailers["grpc-status"] !== undefined) status = String(trailers["grpc-status"]);
        });
        req.on("data", () => {});
        req.on("close", () => {
          if (status !== undefined) resolve({ status: `grpc ${status}` });
          else if (httpStatus !== 0 && httpStatus !== 200)
            resolve({ status: `http ${httpStatus}` });
          else reject(new Error(`gRPC stream closed without grpc-status (rst ${req.rstCode})`));
        });
        req.on("error", () => {});
        req.end(body);
      }),
      "grpc",
    );
  return { send, close: () => session?.close() };
}

/**
 * Connect and gRPC-Web over HTTP/1.1 (fetch): a non-200 status is an answer; a 200 must end
 * with the protocol's end frame (Connect end-stream flag 0x02, gRPC-Web trailers flag 0x80).
 */
export function httpSender(
  baseUrl: string,
  contentType: string,
  path: "stream" | "unary" = "stream",
): Sender {
  const url = `${baseUrl}${path === "stream" ? STREAM_AUDIO : INTERRUPT}`;
  const endFlag = contentType.startsWith("application/grpc-web") ? 0x80 : 0x02;
  return (body) =>
    within(
      (async () => {
        const res = await fetch(url, {
          method: "POST",
          headers: { "content-type": contentType },
          body: Buffer.from(body),
        });
        const bytes = new Uint8Array(await res.arrayBuffer());
        if (res.status !== 200 || path === "unary") return { status: `http ${res.status}` };
        const last = lastEnvelope(bytes);
        if (last === undefined || (last.flags & endFlag) === 0) {
          throw new Error(`${contentType}: 200 without an end frame (${bytes.length} bytes)`);
        }
        return { status: endStatus(last.payload, endFlag) };
      })(),
      contentType,
    );
}

function lastEnvelope(bytes: Uint8Array): { flags: number; payload: Uint8Array } | undefined {
  let at = 0;
  let last: { flags: number; payload: Uint8Array } | undefined;
  while (at + 5 <= bytes.length) {
    const len = new DataView(bytes.buffer, bytes.byteOffset + at + 1, 4).getUint32(0);
    last = { flags: bytes[at] as number, payload: bytes.subarray(at + 5, at + 5 + len) };
    at += 5 + len;
  }
  return at === bytes.length ? last : undefined;
}

/** The code an end frame carries: Connect's end-stream JSON, or gRPC-Web's trailer block. */
function endStatus(payload: Uint8Array, endFlag: number): string {
  const text = new TextDecoder().decode(payload);
  if (endFlag === 0x80) return `grpc ${/grpc-status:\s*(\d+)/i.exec(text)?.[1] ?? "missing"}`;
  const end = JSON.parse(text) as { error?: { code?: string } };
  return `connect ${end.error?.code ?? "ok"}`;
}

/**
 * The bridge: each input is one binary message, followed by a probe call (InterruptSession of
 * a fixed device) on a fresh id. The input was answered when the probe's CallEnd arrives (the
 * socket still serves calls after it) together with the input's own CallEnd when it was a
 * call, or when the server closed the socket with a code (then the next input opens another).
 */
export function bridgeSender(baseUrl: string): { send: Sender; close(): void } {
  const url = `${baseUrl.replace("http", "ws")}/v1/bridge`;
  let socket: Promise<BridgeSocket> | undefined;
  const send: Sender = async (body) => {
    socket ??= BridgeSocket.open(url);
    const s = await socket;
    const answer = await within(s.exchange(body), "bridge");
    if (answer.status.startsWith("closed")) socket = undefined;
    return answer;
  };
  return {
    send,
    close: () => {
      socket?.then((s) => s.ws.close());
    },
  };
}

class BridgeSocket {
  private nextProbe = 1_000_000;
  private readonly ends = new Set<number>();
  private closedWith: number | undefined;
  private wake: (() => void) | undefined;

  private constructor(readonly ws: WebSocket) {
    ws.on("message", (data: Buffer) => {
      const frame = fromBinary(ServerFrameSchema, new Uint8Array(data));
      if (frame.body.case === "end") this.ends.add(frame.callId);
      this.wake?.();
    });
    ws.on("close", (code) => {
      this.closedWith = code;
      this.wake?.();
    });
    ws.on("error", () => {});
  }

  static open(url: string): Promise<BridgeSocket> {
    const ws = new WebSocket(url, ["ptt.bridge.v1"]);
    const s = new BridgeSocket(ws);
    return new Promise((resolve, reject) => {
      ws.once("message", () => resolve(s)); // Hello
      ws.once("close", (code) => reject(new Error(`bridge closed ${code} before Hello`)));
    });
  }

  async exchange(body: Uint8Array): Promise<Answer> {
    const expected = expectedCall(body);
    if (expected !== undefined) this.ends.delete(expected);
    const probe = this.nextProbe++;
    this.ws.send(body);
    if (this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(
        toBinary(ClientFrameSchema, {
          $typeName: "ptt.bridge.v1.ClientFrame",
          callId: probe,
          metadata: {},
          body: {
            case: "interrupt",
            value: { $typeName: "streaming.InterruptRequest", hardwareId: "fuzz-probe" },
          },
        }),
      );
    }
    for (;;) {
      if (this.closedWith !== undefined) return { status: `closed ${this.closedWith}` };
      if (this.ends.has(probe) && (expected === undefined || this.ends.has(expected))) {
        this.ends.delete(probe);
        return { status: "call ended" };
      }
      await new Promise<void>((r) => {
        this.wake = r;
      });
    }
  }
}

/** The call id an input starts, when it decodes as a call the server must end. */
function expectedCall(body: Uint8Array): number | undefined {
  try {
    const frame = fromBinary(ClientFrameSchema, body);
    const starts = frame.body.case === "streamAudio" || frame.body.case === "interrupt";
    return starts && frame.callId > 0 && frame.callId < 1_000_000 ? frame.callId : undefined;
  } catch {
    return undefined;
  }
}
