import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { WebSocket } from "ws";
import {
  type CallEnd,
  ClientFrameSchema,
  type Hello,
  type ServerFrame,
  ServerFrameSchema,
} from "../../src/gen/bridge_pb.js";
import type { StreamResponse } from "../../src/gen/streaming_pb.js";
import { ChunkMode, collect, commit, type Req } from "../contract/calls.js";

// A bridge client with nothing in between: hand-built ClientFrames over a plain `ws`
// socket, every ServerFrame recorded by call id. `ws.pause()` makes it a client that
// does not read (the TCP socket is no longer read; the server's writes back up).

export const BRIDGE_PROTOCOL = "ptt.bridge.v1";
export type Body = MessageInitShape<typeof ClientFrameSchema>["body"];
export type Content = StreamResponse["content"];

export function encode(callId: number, body: Body): Uint8Array {
  return toBinary(ClientFrameSchema, create(ClientFrameSchema, { callId, body }));
}

export const stream = (value: Req): Body => ({ case: "streamAudio", value });
export const collectBody = (hw: string, sid: string, seq: number, text: string): Body =>
  stream(collect(hw, sid, seq, text, { chunkMode: ChunkMode.DELTA }));
export const commitBody = (hw: string, sid: string): Body => stream(commit(hw, sid));

export interface CallLog {
  /** Every frame of the call id but its CallEnds, in arrival order. */
  frames: ServerFrame["body"][];
  ends: CallEnd[];
}

/** A CallLog as RawBridge records it, off a real socket. */
export interface RecordedCallLog extends CallLog {
  /** Index in `frames` at which each CallEnd arrived. */
  endAt: number[];
}

/** The StreamResponse contents among `frames[from..to)`, in order. */
export function responses(log: CallLog, from = 0, to = log.frames.length): Content[] {
  return log.frames
    .slice(from, to)
    .filter((b) => b.case === "response")
    .map((b) => (b.value as StreamResponse).content);
}

/** The text_chunk values of `contents`, concatenated. */
export function textIn(contents: Content[]): string {
  return contents
    .filter((c) => c.case === "textChunk")
    .map((c) => c.value as string)
    .join("");
}

/** The reply text of a call: its text_chunk frames, concatenated. */
export function textOf(log: CallLog): string {
  return textIn(responses(log));
}

export function lastContent(log: CallLog): Content | undefined {
  const last = log.frames.at(-1);
  return last?.case === "response" ? (last.value as StreamResponse).content : undefined;
}

export interface RawBridgeOptions {
  /** Throw (an uncaught error that fails the test) on a text frame from the server. */
  binaryOnly?: boolean;
}

export class RawBridge {
  readonly calls = new Map<number, RecordedCallLog>();
  readonly received: ServerFrame[] = [];
  endCount = 0;
  readonly closed: Promise<{ code: number; reason: string }>;
  private readonly listeners = new Set<() => void>();

  private constructor(
    readonly ws: WebSocket,
    options: RawBridgeOptions,
  ) {
    ws.on("message", (data: Buffer, isBinary) => {
      if (options.binaryOnly && !isBinary) throw new Error("server sent a text frame");
      const frame = fromBinary(ServerFrameSchema, new Uint8Array(data));
      this.received.push(frame);
      const log = this.call(frame.callId);
      if (frame.body.case === "end") {
        log.ends.push(frame.body.value);
        log.endAt.push(log.frames.length);
        this.endCount++;
      } else {
        log.frames.push(frame.body);
      }
      this.notify();
    });
    this.closed = new Promise((resolve) => {
      ws.on("close", (code, reason) => {
        resolve({ code, reason: reason.toString("utf8") });
        this.notify();
      });
    });
    ws.on("error", () => {});
  }

  static async open(
    url: string,
    protocols: string[] = [BRIDGE_PROTOCOL],
    options: RawBridgeOptions = {},
  ): Promise<RawBridge> {
    const raw = new RawBridge(new WebSocket(url, protocols), options);
    await raw.until(() => raw.received.length > 0, "Hello");
    return raw;
  }

  get hello(): Hello {
    const first = this.received[0];
    if (first?.body.case !== "hello") throw new Error("first frame is not a Hello");
    return first.body.value;
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  call(id: number): RecordedCallLog {
    let log = this.calls.get(id);
    if (!log) {
      log = { frames: [], ends: [], endAt: [] };
      this.calls.set(id, log);
    }
    return log;
  }

  send(id: number, body: Body): void {
    this.ws.send(encode(id, body));
  }

  /** Resolves when `pred` holds (checked after every frame), rejects after `ms`. */
  until(pred: () => boolean, what: string, ms = 5000): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!pred()) return;
        clearTimeout(timer);
        this.listeners.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.listeners.delete(check);
        reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
      }, ms);
      this.listeners.add(check);
    });
  }

  /** The n-th CallEnd (1-based) of a call id. */
  async end(id: number, n = 1, ms = 5000): Promise<CallEnd> {
    await this.until(() => this.call(id).ends.length >= n, `CallEnd #${n} of call ${id}`, ms);
    return this.call(id).ends[n - 1] as CallEnd;
  }

  /** Sends one call and waits for its CallEnd. */
  async run(id: number, body: Body, ms = 5000): Promise<{ log: RecordedCallLog; end: CallEnd }> {
    const n = this.call(id).ends.length + 1;
    this.send(id, body);
    const end = await this.end(id, n, ms);
    return { log: this.call(id), end };
  }

  private notify(): void {
    for (const l of [...this.listeners]) l();
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
