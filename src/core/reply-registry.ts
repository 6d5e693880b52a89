import { resourceExhausted } from "./errors.js";
import { LIMIT_NAMES } from "./limits.js";

/** Why a reply was stopped; carried as the abort reason so the stream ends CANCELLED with it. */
export class ReplyAborted extends Error {
  constructor(readonly why: "interrupted" | "cancelled" | "barge-in" | "shutdown") {
    super(`reply ${why}`);
    this.name = "ReplyAborted";
  }
}

export interface RunningReply {
  readonly hardwareId: string;
  readonly sessionId: string;
  readonly turnId: string;
  readonly startedAt: number;
  readonly controller: AbortController;
}

/**
 * The replies running in this process, by device, so InterruptSession, CANCEL and
 * barge-in can abort them. Also the admission gate for concurrent replies: a slot
 * is taken before the buffer is consumed and given back when the reply ends.
 */
export class ReplyRegistry {
  private readonly byDevice = new Map<string, Set<RunningReply>>();
  private slots = 0;
  private seq = 0;

  constructor(private readonly maxConcurrent: number) {}

  get inFlight(): number {
    return this.slots;
  }

  /** Takes a reply slot or throws RESOURCE_EXHAUSTED. Pair with release(). */
  admit(): void {
    if (this.slots >= this.maxConcurrent) {
      throw resourceExhausted(
        LIMIT_NAMES.maxConcurrentReplies,
        `${this.slots} replies are already running on this instance; retry the COMMIT`,
      );
    }
    this.slots++;
  }

  release(): void {
    this.slots--;
  }

  /** Registers a reply that is starting now. */
  start(hardwareId: string, sessionId: string, turnId: string): RunningReply {
    const reply: RunningReply = {
      hardwareId,
      sessionId,
      turnId,
      // Registration order: "started before the interrupt" must not depend on clock ties.
      startedAt: ++this.seq,
      controller: new AbortController(),
    };
    let set = this.byDevice.get(hardwareId);
    if (!set) {
      set = new Set();
      this.byDevice.set(hardwareId, set);
    }
    set.add(reply);
    return reply;
  }

  /** Unregisters a finished reply (only that one: a newer reply of the device stays). */
  finish(reply: RunningReply): void {
    const set = this.byDevice.get(reply.hardwareId);
    if (!set) return;
    set.delete(reply);
    if (set.size === 0) this.byDevice.delete(reply.hardwareId);
  }

  /** Aborts every reply of the device started before now; returns their session ids. */
  interrupt(hardwareId: string, cause: ReplyAborted["why"], except?: string): string[] {
    const set = this.byDevice.get(hardwareId);
    if (!set) return [];
    // An abort listener may start a reply synchronously, and a Set's iteration visits what
    // is added during it: the cutoff keeps "started before the call".
    const cutoff = this.seq;
    const stopped = new Set<string>();
    for (const reply of set) {
      if (reply.startedAt > cutoff || reply.sessionId === except) continue;
      if (reply.controller.signal.aborted) continue;
      reply.controller.abort(new ReplyAborted(cause));
      stopped.add(reply.sessionId);
    }
    return [...stopped];
  }

  /** Aborts the reply of one session, if it is running. */
  cancelSession(hardwareId: string, sessionId: string): boolean {
    const set = this.byDevice.get(hardwareId);
    if (!set) return false;
    let found = false;
    for (const reply of set) {
      if (reply.sessionId === sessionId && !reply.controller.signal.aborted) {
        reply.controller.abort(new ReplyAborted("cancelled"));
        found = true;
      }
    }
    return found;
  }

  /** Aborts everything (shutdown after the grace period). */
  abortAll(): number {
    let n = 0;
    for (const set of this.byDevice.values()) {
      for (const reply of set) {
        if (!reply.controller.signal.aborted) {
          reply.controller.abort(new ReplyAborted("shutdown"));
          n++;
        }
      }
    }
    return n;
  }
}
