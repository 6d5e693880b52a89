// INTERIM: the session engine's driver port and engine as the "engine" branch has them (not yet
// on main when the Redis driver landed), copied unchanged but for import paths and formatting.
// When they land in src/core, delete this folder and import them from there (issue 10, part 1).
import type { ConnectError } from "@connectrpc/connect";
import { resourceExhausted } from "../../../core/errors.js";
import { LIMIT_NAMES, type Limits } from "../../../core/limits.js";
import type {
  CancelResult,
  Clock,
  CollectResult,
  SessionStore,
  StoreStats,
} from "../../../core/ports.js";
import {
  bufferedBytes,
  type Chunk,
  type CommittedTurn,
  collectChunk,
  commitTurn,
  expiryOf,
  type OpenSession,
  openSession,
  type SealedState,
  type SessionKey,
  type SessionRecord,
  seal,
  type Tombstone,
} from "../../../core/session.js";
import { collectOnSealed, commitOnSealed } from "../../../core/session-errors.js";
import { utf8Length } from "../../../core/text-merge.js";
import type { Step, StepView, StepWrite, StoreDriver } from "./store-driver.js";

export interface SessionEngineOptions {
  driver: StoreDriver;
  limits: Readonly<Limits>;
  clock: Clock;
  /** Called with the number of sessions that expired (lazily or by the sweeper). */
  onExpired?: ((count: number) => void) | undefined;
  /** The sweeper runs this long after a deadline, coalescing the ones just after it. */
  sweepSlackMs?: number | undefined;
}

const SWEEP_RETRY_MS = 5_000;

/** A step's changes so far: at most one record write, gauges summed. */
interface Pending {
  now: number;
  write: StepWrite | undefined;
  openDelta: number;
  bytesDelta: number;
  expired: number;
}

/**
 * The one implementation of a store's rules (CONTRACT §3, §5) over a StoreDriver: collect,
 * commit, cancel, expiry at the deadline from `clock.now()` (never from when it is noticed),
 * tombstones, the open-session limits and the byte budget. Every method is one driver step
 * on one session (store-driver.ts); the sweeper (one timer, set for the earliest deadline
 * the engine has written, only while something is due) reclaims what nobody touches again.
 */
export function createSessionStore(options: SessionEngineOptions): SessionStore {
  const { driver, limits, clock } = options;
  const slack = options.sweepSlackMs ?? 250;
  const roomRefusals = new WeakSet<ConnectError>();
  let sweepTimer: unknown;
  let sweepAt = Number.POSITIVE_INFINITY;
  let closed = false;
  const background = new Set<Promise<void>>();

  function armSweeper(deadline: number): void {
    if (closed || deadline >= sweepAt) return;
    if (sweepTimer !== undefined) clock.clearTimer(sweepTimer);
    sweepAt = deadline;
    sweepTimer = clock.setTimer(
      () => {
        sweepTimer = undefined;
        sweepAt = Number.POSITIVE_INFINITY;
        sweepInBackground();
      },
      Math.max(0, deadline - clock.now()) + slack,
    );
  }

  function pending(now: number): Pending {
    return { now, write: undefined, openDelta: 0, bytesDelta: 0, expired: 0 };
  }

  function put(p: Pending, record: SessionRecord | null, dueAt: number, keepUntil: number): void {
    p.write = {
      record,
      dueAt,
      keepMs: Math.max(1, keepUntil - p.now),
      openDelta: p.openDelta,
      bytesDelta: p.bytesDelta,
      maxTombstones: limits.maxTombstonesPerDevice,
    };
  }

  function putOpen(p: Pending, session: OpenSession): void {
    const at = expiryOf(session, limits).at;
    put(p, session, at, at + limits.tombstoneTtlMs);
  }

  function putTomb(p: Pending, tomb: Tombstone): void {
    const end = tomb.sealedAt + limits.tombstoneTtlMs;
    put(p, tomb, end, end);
  }

  /** Seals an open session: gauges down, its tombstone written. */
  function sealOpen(
    p: Pending,
    session: OpenSession,
    state: SealedState,
    at: number,
    why?: "idle" | "hold",
  ): Tombstone {
    p.openDelta -= 1;
    p.bytesDelta -= bufferedBytes(session);
    const tomb = seal(session, state, at, why);
    putTomb(p, tomb);
    return tomb;
  }

  /** The live record, after applying any expiry that is due (sealed at its deadline). */
  function current(p: Pending, record: SessionRecord | undefined): SessionRecord | undefined {
    if (!record) return undefined;
    let found = record;
    if (found.state === "open") {
      const expiry = expiryOf(found, limits);
      if (p.now < expiry.at) return found;
      p.expired++;
      found = sealOpen(p, found, "expired", expiry.at, expiry.why);
    }
    if (p.now - found.sealedAt < limits.tombstoneTtlMs) return found;
    put(p, null, p.now, p.now);
    return undefined;
  }

  /** A step's result: its write (with the gauges summed so far) and its answer. */
  function done<T>(p: Pending, answer: () => T): Step<T> {
    if (p.write) {
      p.write.openDelta = p.openDelta;
      p.write.bytesDelta = p.bytesDelta;
    }
    const wake = p.write?.dueAt;
    return {
      write: p.write,
      answer: () => {
        if (p.expired > 0) options.onExpired?.(p.expired);
        if (wake !== undefined && p.write?.record) armSweeper(wake);
        return answer();
      },
    };
  }

  function refuse(p: Pending, err: ConnectError): Step<never> {
    return done(p, () => {
      throw err;
    });
  }

  function checkRoom(view: StepView, p: Pending, key: SessionKey): ConnectError | undefined {
    let perDevice = 0;
    for (const [id, deadline] of view.deviceOpen) {
      if (id !== key.sessionId && deadline > p.now) perDevice++;
    }
    let err: ConnectError | undefined;
    if (perDevice >= limits.maxOpenSessionsPerDevice) {
      err = resourceExhausted(
        LIMIT_NAMES.maxOpenSessionsPerDevice,
        `hardware_id ${key.hardwareId} already has ${perDevice} open sessions; commit or cancel one first`,
      );
    } else {
      const instance = view.gauges.openSessions + p.openDelta;
      if (instance >= limits.maxOpenSessionsPerInstance) {
        err = resourceExhausted(
          LIMIT_NAMES.maxOpenSessionsPerInstance,
          `this instance already holds ${instance} open sessions`,
        );
      }
    }
    if (err) roomRefusals.add(err);
    return err;
  }

  function collectStep(key: SessionKey, chunk: Chunk, view: StepView): Step<CollectResult> {
    const p = pending(clock.now());
    const record = current(p, view.record);
    if (record && record.state !== "open") return refuse(p, collectOnSealed(record, chunk.seq));
    if (!record) {
      const err = checkRoom(view, p, key);
      if (err) return refuse(p, err);
    }
    const adds =
      utf8Length(chunk.text) +
      (chunk.audio?.data.length ?? 0) +
      (chunk.screenshot?.data.length ?? 0);
    const held = view.gauges.bufferedBytes + p.bytesDelta;
    if (held + adds > limits.maxBufferedBytesPerInstance) {
      return refuse(
        p,
        resourceExhausted(
          LIMIT_NAMES.maxBufferedBytesPerInstance,
          `this instance already buffers ${held} bytes of open holds; retry shortly`,
        ),
      );
    }
    // A copy: collectChunk assigns fields (its arrays are replaced, never edited), so the
    // view's record, maybe the driver's live one, stays as it was.
    const session: OpenSession = record ? { ...record } : openSession(key, p.now);
    let outcome: CollectResult["outcome"];
    try {
      outcome = collectChunk(session, chunk, limits, p.now);
    } catch (err) {
      return refuse(p, err as ConnectError);
    }
    if (!record) p.openDelta += 1;
    p.bytesDelta += bufferedBytes(session) - (record ? bufferedBytes(record) : 0);
    putOpen(p, session);
    const result = { outcome, lastSeq: session.lastSeq, created: !record };
    return done(p, () => result);
  }

  function commitStep(
    key: SessionKey,
    pieces: Chunk[],
    turnId: string,
    view: StepView,
  ): Step<CommittedTurn> {
    const p = pending(clock.now());
    const record = current(p, view.record);
    if (record && record.state !== "open") return refuse(p, commitOnSealed(record, limits));
    let turn: CommittedTurn;
    try {
      // A COMMIT without COLLECTs (single-shot clients) commits a hold of its own pieces.
      turn = commitTurn(record ?? openSession(key, p.now), pieces, limits, p.now, turnId);
    } catch (err) {
      return refuse(p, err as ConnectError);
    }
    if (record) sealOpen(p, record, "committed", p.now);
    else putTomb(p, seal(key, "committed", p.now));
    return done(p, () => turn);
  }

  function cancelStep(key: SessionKey, view: StepView): Step<CancelResult> {
    const p = pending(clock.now());
    const record = current(p, view.record);
    if (record && record.state !== "open") {
      const state = record.state;
      return done(p, () => state);
    }
    if (record) {
      sealOpen(p, record, "cancelled", p.now);
      return done(p, () => "cancelled");
    }
    // Remember the cancel so chunks that overtook it on the wire are refused, not reopened.
    putTomb(p, seal(key, "cancelled", p.now));
    return done(p, () => "unknown");
  }

  /** Applies what is due to one session (expiry, forgetting); answers how many expired. */
  function expireStep(view: StepView): Step<number> {
    const p = pending(clock.now());
    const live = current(p, view.record);
    // Listed as due but not (a record from before a restart): written again with its due time.
    if (live && !p.write) {
      if (live.state === "open") putOpen(p, live);
      else putTomb(p, live);
    }
    const expired = p.expired;
    p.expired = 0; // the sweep reports its total once
    return done(p, () => expired);
  }

  /** Sweeps nobody awaits: close() waits for them, and a failure retries later. */
  function sweepInBackground(): void {
    if (closed) return;
    const run = sweepNow().then(
      () => {},
      () => armSweeper(clock.now() + SWEEP_RETRY_MS),
    );
    background.add(run);
    void run.finally(() => background.delete(run));
  }

  /** Expires what is due and forgets old tombstones; arms the sweeper for the next deadline. */
  async function sweepNow(): Promise<number> {
    const { keys, next } = await driver.due(clock.now());
    let expired = 0;
    for (const key of keys) expired += await driver.step(key, expireStep);
    if (expired > 0) options.onExpired?.(expired);
    armSweeper(next);
    return expired;
  }

  // What a previous run of the process left in the driver (a restart) gets its timer.
  sweepInBackground();

  return {
    async collect(key: SessionKey, chunk: Chunk): Promise<CollectResult> {
      try {
        return await driver.step(key, (view) => collectStep(key, chunk, view));
      } catch (err) {
        if (!roomRefusals.has(err as ConnectError)) throw err;
        // Sessions past their deadline give their room back; then decide again, once.
        await sweepNow();
        return driver.step(key, (view) => collectStep(key, chunk, view));
      }
    },

    commit(key: SessionKey, pieces: Chunk[], turnId: string): Promise<CommittedTurn> {
      return driver.step(key, (view) => commitStep(key, pieces, turnId, view));
    },

    cancel(key: SessionKey): Promise<CancelResult> {
      return driver.step(key, (view) => cancelStep(key, view));
    },

    sweep: sweepNow,

    stats(): Promise<StoreStats> {
      return driver.gauges();
    },

    ping(): Promise<void> {
      return driver.ping();
    },

    async close(): Promise<void> {
      closed = true;
      if (sweepTimer !== undefined) clock.clearTimer(sweepTimer);
      sweepTimer = undefined;
      sweepAt = Number.POSITIVE_INFINITY;
      while (background.size > 0) await Promise.allSettled([...background]);
      await driver.close();
    },
  };
}
