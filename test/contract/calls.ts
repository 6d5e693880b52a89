import type { MessageInitShape } from "@bufbuild/protobuf";
import { type Client, type Code, ConnectError, createClient } from "@connectrpc/connect";
import {
  ChunkMode,
  RequestPhase,
  StreamingService,
  type StreamRequest,
  type StreamRequestSchema,
  type StreamResponse,
} from "../../src/gen/streaming_pb.js";
import type { Target } from "./target.js";

/** A StreamRequest as a plain init object (never an already-built message). */
export type Req = Exclude<MessageInitShape<typeof StreamRequestSchema>, StreamRequest>;
export type StreamingClient = Client<typeof StreamingService>;

export interface CallResult {
  frames: StreamResponse["content"][];
  /** undefined = OK */
  code: Code | undefined;
  message: string;
  headers: Headers;
  trailers: Headers;
  /** Wall time from the call to its end. */
  ms: number;
}

export function clientFor(target: Target): StreamingClient {
  return createClient(StreamingService, target.transport);
}

/** Runs one StreamAudio call to its end and records everything a client can see. */
export async function streamAudio(
  client: StreamingClient,
  req: Req,
  options: {
    signal?: AbortSignal;
    onFrame?: (f: StreamResponse["content"]) => void;
    headers?: Record<string, string>;
  } = {},
): Promise<CallResult> {
  const started = performance.now();
  const frames: StreamResponse["content"][] = [];
  let headers = new Headers();
  let trailers = new Headers();
  let code: Code | undefined;
  let message = "";
  try {
    for await (const res of client.streamAudio(req, {
      signal: options.signal,
      headers: options.headers,
      onHeader: (h) => {
        headers = h;
      },
      onTrailer: (t) => {
        trailers = t;
      },
    })) {
      frames.push(res.content);
      options.onFrame?.(res.content);
    }
  } catch (err) {
    const e = ConnectError.from(err);
    code = e.code;
    message = e.rawMessage;
    // Some protocols deliver trailers of a failed call as the error's metadata.
    if ([...trailers.keys()].length === 0) trailers = e.metadata;
  }
  return { frames, code, message, headers, trailers, ms: performance.now() - started };
}

let deviceCounter = 0;
/** A hardware id no other test uses, so barge-in and per-device limits never cross tests. */
export function newDevice(prefix = "dev"): string {
  deviceCounter++;
  return `${prefix}-${process.pid}-${deviceCounter}-${Math.random().toString(36).slice(2, 8)}`;
}

export function newSession(): string {
  return crypto.randomUUID();
}

export function collect(
  hardwareId: string,
  sessionId: string,
  seq: number,
  text: string | undefined,
  extra: Partial<Req> = {},
): Req {
  return {
    hardwareId,
    sessionId,
    phase: RequestPhase.COLLECT,
    chunkSeq: seq,
    chunkText: text,
    ...extra,
  };
}

export function commit(hardwareId: string, sessionId: string, extra: Partial<Req> = {}): Req {
  return { hardwareId, sessionId, phase: RequestPhase.COMMIT, ...extra };
}

export function cancel(hardwareId: string, sessionId: string): Req {
  return { hardwareId, sessionId, phase: RequestPhase.CANCEL };
}

/** The text of a reply's text_chunk frames, concatenated. */
export function replyText(result: CallResult): string {
  return result.frames
    .filter((f) => f.case === "textChunk")
    .map((f) => f.value as string)
    .join("");
}

export function endMessage(result: CallResult): string | undefined {
  const last = result.frames.at(-1);
  return last?.case === "endMessage" ? last.value : undefined;
}

export { ChunkMode, RequestPhase };
