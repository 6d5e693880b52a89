import type { PttCore } from "./ptt-core.js";

/**
 * Graceful end of running replies: waits until none is left or `graceMs` passed,
 * then cancels the rest (they end CANCELLED). Returns how many were cancelled.
 * Callers stop accepting new calls first.
 */
export async function finishReplies(core: PttCore, graceMs: number): Promise<number> {
  const deadline = core.clock.now() + graceMs;
  while (core.replies.inFlight > 0 && core.clock.now() < deadline) {
    await new Promise<void>((resolve) => core.clock.setTimer(resolve, 10));
  }
  return core.replies.abortAll();
}
