import { resourceExhausted } from "./errors.js";
import { LIMIT_NAMES, type Limits } from "./limits.js";
import type { Clock } from "./ports.js";
import { systemClock } from "./system-clock.js";

/** Why a reply was stopped; carried as the abort reason so the stream ends CANCELLED with it. */
export class ReplyAborted extends Error {
  constructor(readonly why: "interrupted" | "cancelled" | "barge-in" | "shutdown") {
    super(`reply ${why}`);
    this.name = "ReplyAborted";
  }
}

/** A reply ended because its reader took none of it for reply_stall_ms. */
export class ReplyStalled extends Error {
  readonly detail: string;
  constructor(readonly stallMs: number) {
    const detail = `the client read none of the reply for ${stallMs} ms; the reply was ended`;
    super(`${LIMIT_NAMES.replyStallMs}: ${detail}`);
    this.detail = detail;
    this.name = "ReplyStalled";
  }
}

export interface RunningReply {
  readonly hardwareId: string;
  readonly sessionId: string;
  readonly turnId: string;
  readonly startedAt: number;
  readonly controller: AbortController;
}

/** Who gets the reply slots: the instance, each device and each connection get a bound. */
type SlotLimits = Pick<
  Limits,
  "maxConcurrentReplies" | "maxRepliesPerDevice" | "maxRepliesPerConnection" | "replyStallMs"
>;

/** A reply waiting for its reader to take a frame, and what to do if it never does. */
interface Parked {
  since: number;
  onStall: () => void;
}

/**
 * The replies running in this process, by device, so InterruptSession, CANCEL and
 * barge-in can abort them. Also the admission gate for concurrent replies: a slot
 * is taken before the buffer is consumed and given back when the reply ends. Slots are
 * fair: one device, or one connection (whatever devices it carries), holds at most its
 * share, and a reply parked behind a reader that takes nothing for reply_stall_ms is
 * stopped, so a client that stops reading cannot keep slots from everyone else.
 */
export class ReplyRegistry {
  private readonly byDevice = new Map<string, Set<RunningReply>>();
  private readonly slotsByDevice: Shares<string> = new Map();
  private readonly slotsByConnection: Shares<object> = new Map();
  private readonly parked = new Map<RunningReply, Parked>();
  private sweep: unknown;
  private slots = 0;
  private seq = 0;
  private readonly limits: SlotLimits;

  constructor(
    limits: SlotLimits | number,
    private readonly clock: Clock = systemClock,
  ) {
    this.limits =
      typeof limits === "number"
        ? {
            maxConcurrentReplies: limits,
            maxRepliesPerDevice: limits,
            maxRepliesPerConnection: limits,
            replyStallMs: 30_000,
          }
        : limits;
  }

  get inFlight(): number {
    return this.slots;
  }

  /**
   * Takes a reply slot for `sessionId` of `hardwareId` on `connection` (undefined where the
   * runtime cannot tell connections apart) or throws RESOURCE_EXHAUSTED naming the bound that
   * is full. The device's and the connection's shares count sessions: concurrent repeats of
   * one COMMIT (only one of which can take the turn; the store answers the rest
   * ALREADY_EXISTS) use one share between them. Returns the release, which gives the slot
   * back once, however often it is called.
   */
  admit(hardwareId: string, sessionId: string, connection?: object): () => void {
    const { maxConcurrentReplies, maxRepliesPerDevice, maxRepliesPerConnection } = this.limits;
    if (this.slots >= maxConcurrentReplies) {
      throw resourceExhausted(
        LIMIT_NAMES.maxConcurrentReplies,
        `${this.slots} replies are already running on this instance; retry the COMMIT`,
      );
    }
    const key = `${hardwareId}\n${sessionId}`;
    const device = this.slotsByDevice.get(hardwareId);
    if (device && device.size >= maxRepliesPerDevice && !device.has(key)) {
      throw resourceExhausted(
        LIMIT_NAMES.maxRepliesPerDevice,
        `${device.size} replies of this device are already running; retry the COMMIT once one ended`,
      );
    }
    const conn = connection === undefined ? undefined : this.slotsByConnection.get(connection);
    if (conn && conn.size >= maxRepliesPerConnection && !conn.has(key)) {
      throw resourceExhausted(
        LIMIT_NAMES.maxRepliesPerConnection,
        `${conn.size} replies are already running on this connection; read them, or retry the COMMIT on another connection`,
      );
    }
    this.slots++;
    increment(this.slotsByDevice, hardwareId, key);
    if (connection !== undefined) increment(this.slotsByConnection, connection, key);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.slots--;
      decrement(this.slotsByDevice, hardwareId, key);
      if (connection !== undefined) decrement(this.slotsByConnection, connection, key);
    };
  }

  /**
   * The reply handed a frame to its transport and waits for it to be taken: if it is still
   * waiting after reply_stall_ms, `onStall` runs (once). Checked a few times per stall period
   * rather than with a timer per frame.
   */
  park(reply: RunningReply, onStall: () => void): void {
    this.parked.set(reply, { since: this.clock.now(), onStall });
    if (this.sweep === undefined) this.armSweep();
  }

  /** The transport took the frame (or the reply ended). */
  unpark(reply: RunningReply): void {
    this.parked.delete(reply);
  }

  private armSweep(): void {
    const stallMs = this.limits.replyStallMs;
    this.sweep = this.clock.setTimer(
      () => {
        this.sweep = undefined;
        const now = this.clock.now();
        for (const [reply, p] of this.parked) {
          if (now - p.since < stallMs) continue;
          this.parked.delete(reply);
          p.onStall();
        }
        if (this.parked.size > 0) this.armSweep();
      },
      Math.max(5, Math.ceil(stallMs / 4)),
    );
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
    this.parked.delete(reply);
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

/** Slots of each session, per device or per connection: its size is the sessions counted. */
type Shares<K> = Map<K, Map<string, number>>;

function increment<K>(shares: Shares<K>, owner: K, key: string): void {
  let sessions = shares.get(owner);
  if (!sessions) {
    sessions = new Map();
    shares.set(owner, sessions);
  }
  sessions.set(key, (sessions.get(key) ?? 0) + 1);
}

function decrement<K>(shares: Shares<K>, owner: K, key: string): void {
  const sessions = shares.get(owner);
  if (!sessions) return;
  const n = (sessions.get(key) ?? 1) - 1;
  if (n > 0) sessions.set(key, n);
  else sessions.delete(key);
  if (sessions.size === 0) shares.delete(owner);
}
