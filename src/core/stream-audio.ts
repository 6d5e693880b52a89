import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import type { StreamRequest, StreamResponse } from "../gen/streaming_pb.js";
import { Stopper } from "./abortable.js";
import { authorize } from "./auth.js";
import { asCallError } from "./call-errors.js";
import { callTransportOf } from "./call-transport.js";
import { unavailable } from "./errors.js";
import { onCallAbort, throwIfCallAborted } from "./handler-context.js";
import type { PttCore } from "./ptt-core.js";
import { endFrame, errorFrame } from "./reply-frames.js";
import { ReplyStalled } from "./reply-registry.js";
import { ReplyRun } from "./reply-run.js";
import { stopEverywhere } from "./reply-stops.js";
import { undecodableRequest } from "./request-decoding.js";
import {
  collectChunkOf,
  commitPiecesOf,
  type ValidRequest,
  validateStreamRequest,
} from "./request-validation.js";
import { resumeFromOf, resumeReply } from "./resume.js";
import { checkChunkLimits } from "./session.js";

export const COLLECT_ACCEPTED = "COLLECT_ACCEPTED";
export const CANCEL_ACCEPTED = "CANCEL_ACCEPTED";

/**
 * The two acks, one message each for every call: nothing changes a frame once made, and a
 * transport may keep their bytes encoded once (the gRPC fast path does).
 */
export const COLLECT_ACK_FRAME: StreamResponse = endFrame(COLLECT_ACCEPTED);
export const CANCEL_ACK_FRAME: StreamResponse = endFrame(CANCEL_ACCEPTED);

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
      // A request connect's pipeline could not decode (request-decoding.ts).
      const undecodable = undecodableRequest(req);
      if (undecodable) throw undecodable;
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

/** A call that answers with one frame (COLLECT, CANCEL): the frame, then the error, if any. */
export interface OneFrame {
  frame: StreamResponse | undefined;
  error: ConnectError | undefined;
}

/**
 * StreamAudio's COLLECT and CANCEL without an async generator (the gRPC fast path's common
 * call: a generator and its two `next()` promises cost more than the rest of an ack). Resolves
 * with what the generator would yield and throw, or undefined for a COMMIT, which the caller
 * runs through `createStreamAudio` (nothing but decoding and validation has run then: both
 * pure, so running them again there changes nothing).
 */
export function createStreamAudioOnce(core: PttCore) {
  return async function streamAudioOnce(
    req: StreamRequest,
    ctx: HandlerContext,
  ): Promise<OneFrame | undefined> {
    try {
      const undecodable = undecodableRequest(req);
      if (undecodable) throw undecodable;
      const v = validateStreamRequest(req);
      if (v.phase === "commit") return undefined;
      if (core.auth) await authorize(core.auth, ctx.requestHeader, v.key.hardwareId);
      const frame =
        v.phase === "collect" ? await collect(core, req, v, ctx) : await cancel(core, req, v);
      return { frame, error: undefined };
    } catch (err) {
      const error = asCallError(err);
      // As the generator: an error_message frame for old clients, unless the call is gone.
      return { frame: ctx.signal.aborted ? undefined : errorFrame(error.rawMessage), error };
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
  return COLLECT_ACK_FRAME;
}

async function cancel(core: PttCore, req: StreamRequest, v: ValidRequest): Promise<StreamResponse> {
  if (req.resetMemory) await forgetMemory(core, v.key.hardwareId);
  await core.store.cancel(v.key);
  stopEverywhere(core, { kind: "cancel", ...v.key });
  return CANCEL_ACK_FRAME;
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
  const stampFirstFrame = () => {
    const ms = Math.round((performance.now() - receivedAt) * 1000) / 1000;
    ctx.responseTrailer.set("ptt-commit-ms", String(ms));
    core.metrics.firstFrame(ms);
  };
  const resumeFrom = resumeFromOf(ctx);
  if (resumeFrom !== undefined) {
    const resumed = { replied: false, firstFrame: stampFirstFrame };
    try {
      yield* resumeReply(core, v.key, resumeFrom, ctx, resumed);
    } finally {
      state.replied = resumed.replied;
    }
    return;
  }
  const pieces = commitPiecesOf(req, v);
  const transport = callTransportOf(ctx);
  let giveBack: () => void;
  // Admission before consume: nothing below may touch the buffer until a slot is held.
  try {
    for (const [i, piece] of pieces.entries()) {
      checkChunkLimits(piece, core.limits, i === 0 ? "chunk_text" : "prompt");
    }
    core.rates.admitCommit(hardwareId, ctx);
    giveBack = core.replies.admit(hardwareId, sessionId, transport?.connection);
  } catch (err) {
    core.metrics.commit("rejected");
    throw err;
  }
  // Registered before the buffer is consumed, so an interrupt, CANCEL or barge-in that
  // arrives while the store works still reaches this reply.
  const reply = core.replies.start(hardwareId, sessionId, crypto.randomUUID());
  // The slot goes back the moment the reply is stopped, even while nothing pulls the
  // workflow (a call parked at a `yield` behind a slow reader).
  let released = false;
  const releaseSlot = () => {
    if (released) return;
    released = true;
    reply.controller.signal.removeEventListener("abort", releaseSlot);
    core.replies.finish(reply);
    giveBack();
  };
  reply.controller.signal.addEventListener("abort", releaseSlot, { once: true });
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
    throwIfCallAborted(ctx);
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
  // The device's earlier replies that nobody resumed settle first: this turn's memory holds them.
  await core.runs.settleDevice(hardwareId);
  const callSignal = () => ctx.signal;
  const run = new ReplyRun(core, reply, turn, callSignal, ctx.responseHeader, releaseSlot);
  core.runs.add(run);
  core.metrics.workflowRuns++;
  await run.open();
  // The call reads until it hangs up or a resume takes the reply over; the run goes on.
  const gone = new Stopper();
  run.attach(gone.stop);
  const unwatch = onCallAbort(ctx, gone.stop);
  let deliveredEnding = false;
  try {
    for (;;) {
      let step: Awaited<ReturnType<ReplyRun["next"]>>;
      try {
        step = await gone.race(run.next());
      } catch (err) {
        // A stop (shutdown, interrupt) and the call's own end can abort together: the stop's
        // reason is the one the client must hear.
        throw reply.controller.signal.aborted ? reply.controller.signal.reason : err;
      }
      if ("end" in step) {
        if (!state.replied) stampFirstFrame();
        deliveredEnding = true;
        if (step.end) throw step.end;
        break;
      }
      if (!state.replied) stampFirstFrame();
      state.replied = true;
      core.replies.park(reply, onStall);
      yield step.frame;
      core.replies.unpark(reply);
      // Every transport (connect's pipeline, the gRPC fast path, the bridge) writes a frame
      // before it pulls the next one, and returns this generator instead when it could not:
      // getting here means this frame was written to the client's connection.
      run.markDelivered(step.index + 1);
    }
    core.replies.park(reply, onStall);
    yield endFrame(core.endMessage);
    core.replies.unpark(reply);
  } finally {
    core.replies.unpark(reply);
    unwatch();
    if (deliveredEnding) await run.settle();
    else run.detach();
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
