import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import type { StreamRequest, StreamResponse } from "../gen/streaming_pb.js";
import { linkSignals, untilAborted } from "./abortable.js";
import { authorize } from "./auth.js";
import { callTransportOf } from "./call-transport.js";
import { resourceExhausted, toConnectError, unavailable } from "./errors.js";
import { LIMIT_NAMES } from "./limits.js";
import type { Logger, ReplyContext } from "./ports.js";
import type { PttCore } from "./ptt-core.js";
import { endFrame, errorFrame, replyFrame } from "./reply-frames.js";
import { ReplyAborted, ReplyStalled } from "./reply-registry.js";
import { stopEverywhere } from "./reply-stops.js";
import {
  collectChunkOf,
  commitPiecesOf,
  type ValidRequest,
  validateStreamRequest,
} from "./request-validation.js";
import { checkChunkLimits } from "./session.js";

export const COLLECT_ACCEPTED = "COLLECT_ACCEPTED";
export const CANCEL_ACCEPTED = "CANCEL_ACCEPTED";

/** Tracks whether a reply frame went out: errors after one get no error frame (docs/protocol.md §4). */
interface CallState {
  replied: boolean;
}

/** StreamAudio: one COLLECT chunk, COMMIT or CANCEL per call. */
export function createStreamAudio(core: PttCore) {
  return async function* streamAudio(
    req: StreamRequest,
    ctx: HandlerContext,
  ): AsyncGenerator<StreamResponse> {
    const state: CallState = { replied: false };
    const receivedAt = performance.now();
    try {
      const v = validateStreamRequest(req);
      // Only with auth on: reading ctx.requestHeader builds a Headers object per call.
      if (core.auth) await authorize(core.auth, ctx.requestHeader, v.key.hardwareId);
      if (v.phase === "collect") yield await collect(core, req, v, ctx);
      else if (v.phase === "cancel") yield await cancel(core, req, v);
      else yield* commit(core, req, v, ctx, state, receivedAt);
    } catch (err) {
      const error = asCallError(err);
      // Old clients read the reason from an error_message frame; new ones from the status.
      if (!state.replied && !ctx.signal.aborted) yield errorFrame(error.rawMessage);
      throw error;
    }
  };
}

async function collect(
  core: PttCore,
  req: StreamRequest,
  v: ValidRequest,
  ctx: HandlerContext,
): Promise<StreamResponse> {
  const chunk = collectChunkOf(req, v);
  let result: Awaited<ReturnType<PttCore["store"]["collect"]>>;
  try {
    checkChunkLimits(chunk, core.limits, req.chunkText !== undefined ? "chunk_text" : "prompt");
    core.rates.collect(v.key.hardwareId, ctx);
    result = await core.store.collect(v.key, chunk);
  } catch (err) {
    const sealed = err instanceof ConnectError && err.code === Code.FailedPrecondition;
    core.metrics.chunk(sealed ? "sealed" : "rejected");
    throw err;
  }
  core.metrics.chunk(result.outcome);
  if (result.created && core.bargeIn === "press") {
    // Barge-in on press: a new hold silences what the device is still saying.
    const { hardwareId, sessionId } = v.key;
    stopEverywhere(core, { kind: "interrupt", hardwareId, why: "barge-in", except: sessionId });
  }
  ctx.responseTrailer.set("ptt-collect", result.outcome);
  ctx.responseTrailer.set("ptt-last-seq", String(result.lastSeq));
  return endFrame(COLLECT_ACCEPTED);
}

async function cancel(core: PttCore, req: StreamRequest, v: ValidRequest): Promise<StreamResponse> {
  if (req.resetMemory) await forgetMemory(core, v.key.hardwareId);
  await core.store.cancel(v.key);
  stopEverywhere(core, { kind: "cancel", ...v.key });
  return endFrame(CANCEL_ACCEPTED);
}

async function* commit(
  core: PttCore,
  req: StreamRequest,
  v: ValidRequest,
  ctx: HandlerContext,
  state: CallState,
  receivedAt: number,
): AsyncGenerator<StreamResponse> {
  const { hardwareId, sessionId } = v.key;
  const pieces = commitPiecesOf(req, v);
  const transport = callTransportOf(ctx);
  let giveBack: () => void;
  // Admission before consume: nothing below may touch the buffer until a slot is held.
  try {
    for (const [i, piece] of pieces.entries()) {
      checkChunkLimits(piece, core.limits, i === 0 ? "chunk_text" : "prompt");
    }
    core.rates.admitCommit(hardwareId, ctx);
    giveBack = core.replies.admit(hardwareId, transport?.connection);
  } catch (err) {
    core.metrics.commit("rejected");
    throw err;
  }
  // Registered before the buffer is consumed, so an interrupt, CANCEL or barge-in that
  // arrives while the store works still reaches this reply.
  const reply = core.replies.start(hardwareId, sessionId, crypto.randomUUID());
  const linked = linkSignals(ctx.signal, reply.controller.signal);
  const signal = linked.signal;
  // The slot goes back the moment the reply is stopped, even while this generator is
  // parked at a `yield` behind a slow reader (its `finally` runs only when pulled).
  let released = false;
  const releaseSlot = () => {
    if (released) return;
    released = true;
    signal.removeEventListener("abort", releaseSlot);
    linked.unlink();
    core.replies.finish(reply);
    giveBack();
  };
  signal.addEventListener("abort", releaseSlot, { once: true });
  // A frame its transport has not taken after reply_stall_ms: the reader stopped reading.
  // The reply stops (its slot goes back now) and the transport ends the call on the wire.
  const onStall = () => {
    const stalled = new ReplyStalled(core.limits.replyStallMs);
    core.logger.warn("reply stalled", { hardwareId, sessionId, stallMs: stalled.stallMs });
    reply.controller.abort(stalled);
    transport?.endStalled(asCallError(stalled));
  };
  let turn: Awaited<ReturnType<PttCore["store"]["commit"]>>;
  try {
    // A caller that is gone (or a server shutting down) must not consume the buffer.
    ctx.signal.throwIfAborted();
    // Before the buffer is consumed: a memory that could not be reset fails a retryable COMMIT.
    if (req.resetMemory) await forgetMemory(core, hardwareId);
    turn = await core.store.commit(v.key, pieces, reply.turnId);
    core.rates.committed(hardwareId);
  } catch (err) {
    releaseSlot();
    core.metrics.commit(commitFailure(err));
    throw err;
  }
  if (core.bargeIn === "commit") {
    stopEverywhere(core, { kind: "interrupt", hardwareId, why: "barge-in", except: sessionId });
  }
  core.logger.info("commit", {
    hardwareId,
    sessionId,
    turnId: turn.turnId,
    chunks: turn.chunks,
    heldMs: turn.heldMs,
  });
  core.logger.debug("commit text", { turnId: turn.turnId, text: turn.text });
  ctx.responseHeader.set("ptt-turn-id", turn.turnId);
  const stampFirstFrame = () => {
    const ms = Math.round((performance.now() - receivedAt) * 1000) / 1000;
    ctx.responseTrailer.set("ptt-commit-ms", String(ms));
    core.metrics.firstFrame(ms);
  };
  const progress = new ReplyProgress(ctx.responseHeader);
  try {
    for await (const part of untilAborted(core.workflow(turn, signal, progress), signal)) {
      const frame = replyFrame(part, sessionId);
      if (!frame) continue;
      if (!state.replied) stampFirstFrame();
      state.replied = true;
      core.replies.park(reply, onStall);
      yield frame;
      core.replies.unpark(reply);
      // Every transport (connect's pipeline, the gRPC fast path, the bridge) writes a frame
      // before it pulls the next one, and returns this generator instead when it could not:
      // getting here means this frame was written to the client's connection.
      if (part.kind === "text") progress.text += part.text;
    }
    if (!state.replied) stampFirstFrame();
    core.metrics.commit("ok");
    core.replies.park(reply, onStall);
    yield endFrame(core.endMessage);
    core.replies.unpark(reply);
  } catch (err) {
    // Stopped by us (interrupt, cancel, shutdown) or by the caller hanging up: not a failure.
    const stopped = reply.controller.signal.aborted || ctx.signal.aborted;
    core.metrics.commit(stopped ? "cancelled" : "failed");
    // The client gets "internal error"; the operator gets the reason (never the transcript).
    if (!stopped) core.logger.error("workflow failed", { turnId: turn.turnId, error: String(err) });
    throw err;
  } finally {
    releaseSlot();
    await progress.end(core.logger, turn.turnId);
  }
}

/** The ReplyContext a workflow gets: what was delivered, and what to run when the reply ends. */
class ReplyProgress implements ReplyContext {
  text = "";
  private hooks: (() => void | Promise<void>)[] = [];

  constructor(private readonly headers: Headers) {}

  header(name: string, value: string): void {
    this.headers.set(name, value);
  }

  delivered(): string {
    return this.text;
  }

  onEnd(fn: () => void | Promise<void>): void {
    this.hooks.push(fn);
  }

  async end(logger: Logger, turnId: string): Promise<void> {
    const hooks = this.hooks;
    this.hooks = [];
    for (const fn of hooks) {
      try {
        await fn();
      } catch (err) {
        logger.error("reply end hook failed", { turnId, error: String(err) });
      }
    }
  }
}

/** reset_memory: the device's next turn starts a new conversation. */
async function forgetMemory(core: PttCore, hardwareId: string): Promise<void> {
  try {
    await core.memory.forget(hardwareId);
  } catch (err) {
    throw unavailable(
      `conversation memory: ${err instanceof Error ? err.message : String(err)}; nothing changed, retry`,
    );
  }
}

function commitFailure(err: unknown) {
  if (!(err instanceof ConnectError)) return "failed" as const;
  switch (err.code) {
    case Code.AlreadyExists:
      return "already_committed" as const;
    case Code.FailedPrecondition:
      return "sealed" as const;
    case Code.InvalidArgument:
      return "empty" as const;
    default:
      return "rejected" as const;
  }
}

/** The status a failed call ends with. Aborted replies end CANCELLED (docs/protocol.md §4). */
function asCallError(err: unknown): ConnectError {
  // The reader took nothing for reply_stall_ms (docs/protocol.md §5).
  if (err instanceof ReplyStalled) return resourceExhausted(LIMIT_NAMES.replyStallMs, err.detail);
  if (err instanceof ReplyAborted) {
    const why =
      err.why === "interrupted"
        ? "reply interrupted by InterruptSession"
        : err.why === "barge-in"
          ? "reply interrupted: the device started a new hold"
          : err.why === "cancelled"
            ? "reply cancelled by CANCEL"
            : "reply cancelled: the server is shutting down";
    return new ConnectError(why, Code.Canceled);
  }
  // A bare abort (DOMException "AbortError") from a signal we did not give a reason to.
  if (err instanceof Error && err.name === "AbortError") {
    return new ConnectError("call cancelled", Code.Canceled);
  }
  return toConnectError(err);
}
