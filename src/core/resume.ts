import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { type StreamResponse, StreamResponseSchema } from "../gen/streaming_pb.js";
import { invalidArgument, resourceExhausted, unavailable } from "./errors.js";
import { LazyHandlerContext } from "./handler-context.js";
import type { JournalHead } from "./ports.js";
import type { PttCore } from "./ptt-core.js";
import { endFrame } from "./reply-frames.js";
import type { SessionKey } from "./session.js";

/** The request header of a resumed COMMIT: how many reply frames the client already has. */
export const RESUME_HEADER = "ptt-resume-from";

/** ptt-resume-from as a frame count, or undefined for an ordinary COMMIT. */
export function resumeFromOf(ctx: HandlerContext): number | undefined {
  // Most calls do not resume: read the one header, without building every request header.
  const raw =
    ctx instanceof LazyHandlerContext
      ? ctx.requestHeaderValue(RESUME_HEADER)
      : ctx.requestHeader.get(RESUME_HEADER);
  if (raw === null) return undefined;
  const n = Number(raw);
  if (!/^\s*\d{1,15}\s*$/.test(raw) || !Number.isSafeInteger(n)) {
    throw invalidArgument(RESUME_HEADER, "must be the number of reply frames received (0 or more)");
  }
  return n;
}

/** Frames replayed before the replay lets the event loop run. */
const REPLAY_BURST = 64;

/** Tracks what the call sent, for the error frame rule (docs/protocol.md §4). */
export interface ResumeState {
  replied: boolean;
  /** Stamps ptt-commit-ms (here: resume received → first frame). */
  firstFrame(): void;
}

/**
 * A resumed COMMIT (docs/protocol.md §9): the same turn id, frames `from`… from the journal,
 * then live while the reply still runs, then the ending the original had. The workflow does
 * not run: a resume only reads.
 */
export async function* resumeReply(
  core: PttCore,
  key: SessionKey,
  from: number,
  ctx: HandlerContext,
  state: ResumeState,
): AsyncGenerator<StreamResponse> {
  const head = await readHead(core, key);
  if (!head) {
    core.metrics.resume("not_found");
    throw new ConnectError(
      `session ${key.sessionId} has no reply to resume: it was never committed, or its reply ended more than ${core.resumeWindowMs} ms ago`,
      Code.NotFound,
    );
  }
  const stop = head.end?.code === Code.ResourceExhausted ? head.end : undefined;
  if (stop && from > head.frames) {
    core.metrics.resume("out_of_range");
    throw resourceExhausted("max_journal_bytes", stop.message.replace(/^max_journal_bytes: /, ""));
  }
  if (from > head.frames) {
    core.metrics.resume("out_of_range");
    throw new ConnectError(
      `${RESUME_HEADER}: ${from} is past the end of the reply (${head.frames} frames${head.end ? "" : " so far"})`,
      Code.OutOfRange,
    );
  }
  core.metrics.resume("ok");
  ctx.responseHeader.set("ptt-turn-id", head.turnId);
  // A call on this instance still attached to the reply (its connection died unnoticed) lets
  // go, so the frames go to this call alone.
  const local = core.runs.get(key);
  local?.takeOverFromCall();
  state.replied = from > 0;
  let burst = 0;
  for await (const entry of core.journal.read(key, from, ctx.signal, idleLimit(core))) {
    if (entry.kind === "frame") {
      if (!state.replied) state.firstFrame();
      state.replied = true;
      yield fromBinary(StreamResponseSchema, entry.bytes);
      local?.markDelivered(entry.index + 1);
      // A backlog is read without waiting: let the transport flush (and other calls run)
      // between bursts, or the client gets the first frame only with the last.
      if (++burst === REPLAY_BURST) {
        burst = 0;
        await new Promise<void>((resolve) => core.clock.setTimer(resolve, 0));
      }
      continue;
    }
    if (!state.replied) state.firstFrame();
    const { code, message } = entry.end;
    if (code === 0) {
      yield endFrame(message);
      await local?.settle();
      return;
    }
    await local?.settle();
    throw new ConnectError(message, code);
  }
  ctx.signal.throwIfAborted();
  throw unavailable(
    "the reply's journal stopped without an end: the instance running it went away; commit again",
  );
}

/** A writer that wrote nothing for this long is gone (at least the window; a slow model is not). */
function idleLimit(core: PttCore): number {
  return Math.max(core.resumeWindowMs, 5000);
}

async function readHead(core: PttCore, key: SessionKey): Promise<JournalHead | undefined> {
  try {
    return await core.journal.head(key);
  } catch (err) {
    if (err instanceof ConnectError) throw err;
    throw unavailable(`reply journal: ${err instanceof Error ? err.message : String(err)}`);
  }
}
