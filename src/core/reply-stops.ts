import { unavailable } from "./errors.js";
import type { Metrics } from "./metrics.js";
import type { Logger, ReplyBus, ReplyStop } from "./ports.js";
import type { ReplyRegistry } from "./reply-registry.js";

/**
 * InterruptSession, CANCEL and barge-in: each stops the replies of this instance at once and
 * carries the stop over the reply bus to the other instances sharing the store.
 */

/** One instance alone: there is nobody to tell. */
export const localReplyBus: ReplyBus = {
  async publish() {
    return [];
  },
  listen() {},
  async close() {},
};

interface Stopper {
  readonly replies: ReplyRegistry;
  readonly replyBus: ReplyBus;
  readonly metrics: Metrics;
  readonly logger: Logger;
}

/** Stops what `stop` names on this instance; returns the session ids it stopped. */
export function applyStop(replies: ReplyRegistry, stop: ReplyStop): string[] {
  if (stop.kind === "interrupt") return replies.interrupt(stop.hardwareId, stop.why, stop.except);
  return replies.cancelSession(stop.hardwareId, stop.sessionId) ? [stop.sessionId] : [];
}

/** A stop that arrived from another instance (the bus's listener); returns what it stopped. */
export function applyRemoteStop(core: Stopper, stop: ReplyStop): string[] {
  const stopped = applyStop(core.replies, stop);
  if (stop.kind === "interrupt") core.metrics.interruptedReplies += stopped.length;
  return stopped;
}

/**
 * Barge-in and CANCEL: stops here and tells the others without waiting for them (the call's
 * answer does not depend on theirs). A stop that cannot be sent is logged, not thrown: the
 * call itself succeeded. Returns the session ids stopped here.
 */
export function stopEverywhere(core: Stopper, stop: ReplyStop): string[] {
  const stopped = applyStop(core.replies, stop);
  if (stop.kind === "interrupt") core.metrics.interruptedReplies += stopped.length;
  core.replyBus.publish(stop, false).catch((err: unknown) => {
    core.logger.warn("reply stop not sent to the other instances", {
      kind: stop.kind,
      hardwareId: stop.hardwareId,
      error: err instanceof Error ? err.message : String(err),
    });
  });
  return stopped;
}

/**
 * InterruptSession: stops the device's replies here, then waits for the other instances to
 * say which they stopped. When they cannot be reached the call fails UNAVAILABLE (saying
 * what was stopped here), so a client never takes a partial answer for the whole.
 */
export async function interruptEverywhere(core: Stopper, hardwareId: string): Promise<string[]> {
  const stop: ReplyStop = { kind: "interrupt", hardwareId, why: "interrupted" };
  const here = applyStop(core.replies, stop);
  core.metrics.interruptedReplies += here.length;
  let elsewhere: string[];
  try {
    elsewhere = await core.replyBus.publish(stop, true);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw unavailable(
      `reply bus: the other instances could not be told to interrupt (${why}); stopped on this instance: ${here.length > 0 ? here.join(", ") : "none"}`,
    );
  }
  if (elsewhere.length === 0) return here;
  return [...new Set([...here, ...elsewhere])];
}
