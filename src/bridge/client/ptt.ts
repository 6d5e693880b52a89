import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  ChunkMode,
  type InterruptResponse,
  RequestPhase,
  type StreamRequest,
  StreamRequestSchema,
  type StreamResponse,
} from "../../gen/streaming_pb.js";
import { BridgeChannel, type ChannelOptions, type ChannelState } from "./channel.js";
import { callError } from "./errors.js";
import { PushQueue } from "./push-queue.js";

export interface PttOptions extends ChannelOptions {
  hardwareId: string;
}

export type TextMode = "snapshot" | "delta";

export interface ChunkAck {
  seq: number;
  /** What the server did with it: `stale` and `duplicate` are acks too. */
  outcome: "accepted" | "duplicate" | "stale";
  lastSeq: number;
}

export type ReplyPart =
  | { kind: "text"; text: string }
  | { kind: "audio"; data: Uint8Array; dtype: string; sampleRate: number; channels: number }
  | { kind: "action"; json: string; featureId?: string | undefined };

export interface ReplyStatus {
  /** undefined when the reply completed. */
  error?: ConnectError | undefined;
  /** The end_message, when the reply completed. */
  endMessage?: string | undefined;
  /** Headers and trailers of the call (ptt-turn-id, ptt-commit-ms). */
  metadata: Headers;
}

/** One streamed reply: iterate it for parts; `done` settles with how it ended. */
export interface Reply extends AsyncIterable<ReplyPart> {
  readonly done: Promise<ReplyStatus>;
  cancel(): void;
}

type RequestFields = Omit<MessageInitShape<typeof StreamRequestSchema>, "$typeName">;

const MODES: Record<TextMode, ChunkMode> = {
  snapshot: ChunkMode.SNAPSHOT,
  delta: ChunkMode.DELTA,
};

/**
 * Push-to-talk over the bridge: `const ptt = connect(url, { hardwareId })`,
 * `const hold = ptt.hold()`, `hold.text(partial)`, `await hold.release()`.
 * Chunks are numbered and kept until acked; after a reconnect every un-acked
 * chunk is sent again (the server drops duplicates by seq) before the COMMIT.
 */
export function connect(url: string, options: PttOptions): Ptt {
  return new Ptt(url, options);
}

export class Ptt {
  readonly channel: BridgeChannel;

  constructor(
    url: string,
    private readonly options: PttOptions,
  ) {
    // Optional on every runtime: on Workers it routes the socket straight to its device's Durable
    // Object (without it, each call takes one more hop); elsewhere a load balancer may hash on it.
    const routed = new URL(url);
    if (!routed.searchParams.has("hardware_id"))
      routed.searchParams.set("hardware_id", options.hardwareId);
    this.channel = new BridgeChannel(routed.toString(), options);
  }

  get state(): ChannelState {
    return this.channel.state;
  }

  get hardwareId(): string {
    return this.options.hardwareId;
  }

  /** Starts a hold (a key press): a new session id. */
  hold(options: HoldOptions = {}): Hold {
    return new Hold(this, newSessionId(), MODES[options.mode ?? "snapshot"], options);
  }

  /** Stops every reply of this device that is playing. */
  interrupt(): Promise<InterruptResponse> {
    return new Promise((resolve, reject) => {
      let answer: InterruptResponse | undefined;
      this.channel.call(
        { case: "interrupt", value: { hardwareId: this.options.hardwareId } },
        {
          // Not resent after a reconnect: by then it could stop the next turn's reply.
          resend: false,
          onFrame: (body) => {
            if (body.case === "interrupt") answer = body.value;
          },
          onEnd: (end) => {
            const error = callError(end);
            if (error) reject(error);
            else if (answer) resolve(answer);
            else reject(new ConnectError("interrupt ended without an answer", Code.Internal));
          },
        },
      );
    });
  }

  close(): void {
    this.channel.close();
  }
}

export interface ReleaseOptions {
  /** Sent with the COMMIT, merged after the chunks as one more piece of text. */
  prompt?: string;
  /** Stops waiting for acks (nothing is committed), or cancels the reply once it runs. */
  signal?: AbortSignal;
}

/** The error of a release() whose signal aborted before the COMMIT was sent. */
function abortError(signal: AbortSignal): ConnectError {
  const why = signal.reason instanceof Error ? `: ${signal.reason.message}` : "";
  return new ConnectError(`release aborted before the COMMIT was sent${why}`, Code.Canceled);
}

export interface HoldOptions {
  mode?: TextMode;
  /** A chunk was numbered and handed to the connection. */
  onSent?: (seq: number) => void;
  /** A chunk was acked (also after being resent across a reconnect). */
  onAck?: (ack: ChunkAck) => void;
  /** A chunk was refused; release() will reject with the first such error. */
  onRefused?: (seq: number, error: ConnectError) => void;
}

export class Hold {
  private seq = 0;
  private readonly inFlight = new Set<Promise<ChunkAck>>();
  private firstError: ConnectError | undefined;
  private ackedCount = 0;
  private sealed = false;

  constructor(
    private readonly ptt: Ptt,
    readonly sessionId: string,
    private readonly mode: ChunkMode,
    private readonly events: HoldOptions = {},
  ) {}

  /** Chunks sent and not yet acked (they are resent after a reconnect). */
  get pending(): number {
    return this.inFlight.size;
  }

  get acked(): number {
    return this.ackedCount;
  }

  /** The transcript so far (snapshot mode) or the next piece (delta mode). */
  text(partial: string): Promise<ChunkAck> {
    return this.collect({ chunkText: partial });
  }

  /** Audio captured while the key is held, e.g. a MediaRecorder chunk. */
  audio(
    data: Uint8Array,
    format: { encoding: string; sampleRate?: number; channels?: number },
  ): Promise<ChunkAck> {
    return this.collect({
      chunkAudio: {
        data,
        encoding: format.encoding,
        sampleRate: format.sampleRate ?? 0,
        channels: format.channels ?? 0,
      },
    });
  }

  /**
   * Key released: waits until every chunk is acked (across reconnects), then commits
   * and returns the streaming reply. Rejects if a chunk was refused, so nothing is
   * committed without the client knowing what is missing, and with `unavailable` when
   * no connection comes up within the channel's `connectTimeoutMs`.
   *
   * `signal`: aborting it before the COMMIT is sent rejects with `canceled` and commits
   * nothing (the server expires the hold); aborting it later cancels the reply.
   */
  async release(options: ReleaseOptions = {}): Promise<Reply> {
    if (this.sealed) throw this.sealedError("release");
    const { signal } = options;
    if (signal?.aborted) throw abortError(signal);
    this.sealed = true;
    const acked = Promise.allSettled([...this.inFlight]);
    if (signal) {
      let onAbort!: () => void;
      const aborted = new Promise<never>((_, reject) => {
        onAbort = () => reject(abortError(signal));
        signal.addEventListener("abort", onAbort, { once: true });
      });
      try {
        await Promise.race([acked, aborted]);
      } finally {
        signal.removeEventListener("abort", onAbort);
      }
    } else {
      await acked;
    }
    if (this.firstError) throw this.firstError;
    const reply = streamReply(
      this.ptt.channel,
      this.request(RequestPhase.COMMIT, 0, { prompt: options.prompt ?? "" }),
    );
    if (signal) {
      const cancel = () => reply.cancel();
      signal.addEventListener("abort", cancel, { once: true });
      const forget = () => signal.removeEventListener("abort", cancel);
      reply.done.then(forget, forget);
    }
    return reply;
  }

  /** Abandons the hold: the server drops its buffer and refuses late chunks. */
  async cancel(): Promise<void> {
    this.sealed = true;
    const reply = streamReply(this.ptt.channel, this.request(RequestPhase.CANCEL, 0, {}), true);
    for await (const _ of reply) {
      // CANCEL answers one CANCEL_ACCEPTED frame
    }
    const status = await reply.done;
    if (status.error) throw status.error;
  }

  private collect(fields: RequestFields): Promise<ChunkAck> {
    if (this.sealed) return Promise.reject(this.sealedError("add a chunk to"));
    const seq = ++this.seq;
    const req = this.request(RequestPhase.COLLECT, seq, fields);
    const ack = new Promise<ChunkAck>((resolve, reject) => {
      this.ptt.channel.call(
        { case: "streamAudio", value: req },
        {
          resend: true, // sequenced: the server acks a repeat as `duplicate`
          onFrame: () => {},
          onEnd: (end) => {
            const error = callError(end);
            if (error) {
              this.firstError ??= error;
              this.events.onRefused?.(seq, error);
              reject(error);
              return;
            }
            this.ackedCount++;
            const acked: ChunkAck = {
              seq,
              outcome: (end.metadata["ptt-collect"] ?? "accepted") as ChunkAck["outcome"],
              lastSeq: Number(end.metadata["ptt-last-seq"] ?? seq),
            };
            this.events.onAck?.(acked);
            resolve(acked);
          },
        },
      );
    });
    this.inFlight.add(ack);
    this.events.onSent?.(seq);
    const settle = () => this.inFlight.delete(ack);
    ack.then(settle, settle);
    return ack;
  }

  private request(phase: RequestPhase, seq: number, fields: RequestFields): StreamRequest {
    return create(StreamRequestSchema, {
      ...fields,
      hardwareId: this.ptt.hardwareId,
      sessionId: this.sessionId,
      phase,
      chunkSeq: seq,
      chunkMode: this.mode,
    });
  }

  private sealedError(what: string): ConnectError {
    return new ConnectError(
      `cannot ${what} hold ${this.sessionId}: it was released or cancelled`,
      Code.FailedPrecondition,
    );
  }
}

function streamReply(channel: BridgeChannel, req: StreamRequest, resend = false): Reply {
  const parts = new PushQueue<ReplyPart>();
  let endMessage: string | undefined;
  let settle!: (s: ReplyStatus) => void;
  const done = new Promise<ReplyStatus>((r) => {
    settle = r;
  });
  const handle = channel.call(
    { case: "streamAudio", value: req },
    {
      resend,
      resumable: req.phase === RequestPhase.COMMIT,
      onFrame: (body) => {
        if (body.case !== "response") return;
        const part = toPart(body.value);
        if (part) parts.push(part);
        if (body.value.content.case === "endMessage") endMessage = body.value.content.value;
      },
      onEnd: (end) => {
        const error = callError(end);
        settle({ error, endMessage, metadata: new Headers(end.metadata) });
        parts.end(error);
      },
    },
  );
  return {
    done,
    cancel: () => handle.cancel(),
    [Symbol.asyncIterator]: () => parts[Symbol.asyncIterator](),
  };
}

function toPart(res: StreamResponse): ReplyPart | undefined {
  const c = res.content;
  switch (c.case) {
    case "textChunk":
      return { kind: "text", text: c.value };
    case "audioChunk":
      return {
        kind: "audio",
        data: c.value.audioData,
        dtype: c.value.dtype,
        sampleRate: c.value.sampleRate,
        channels: c.value.channels,
      };
    case "actionMessage":
      return { kind: "action", json: c.value.actionJson, featureId: c.value.featureId };
    default:
      // end_message and error_message are the call's status, reported by `done`.
      return undefined;
  }
}

/** A version-4 UUID; crypto.randomUUID exists only in secure contexts (https, localhost). */
function newSessionId(): string {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = ((b[6] as number) & 0x0f) | 0x40;
  b[8] = ((b[8] as number) & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
