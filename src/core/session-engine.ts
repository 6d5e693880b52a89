import type { ConnectError } from "@connectrpc/connect";
import { resourceExhausted } from "./errors.js";
import { LIMIT_NAMES, type Limits } from "./limits.js";
import type { CancelResult, Clock, CollectResult, SessionStore, StoreStats } from "./ports.js";
import {
  bufferedBytes,
  type Chunk,
  type CommittedTurn,
  collectChunk,
  commitTurn,
  copyOpen,
  expiryAt,
  expiryOf,
  type OpenSession,
  openSession,
  type SealedState,
  type SessionKey,
  type SessionRecord,
  seal,
  type Tombstone,
} from "./session.js";
import { collectOnSealed, commitOnSealed } from "./session-errors.js";
import type { Step, StepRun, StepView, StepWrite, StoreDriver } from "./store-driver.js";
import { utf8Length } from "./text-merge.js";

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

/** A COMMIT's argument to its step. */
interface CommitArg {
  pieces: Chunk[];
  turnId: string;
}

/**
 * One step as the engine builds it: the driver's Step plus the answer, kept alongside. It is
 * its own StepWrite (one object per step, not two): `write` is set to the step itself by
 * `put`, which every step calls after its last change to the gauge deltas.
 */
interface EngineStep<T> extends Step, StepWrite {
  now: number;
  /** Sessions this step found past their deadline (0 or 1). */
  expired: number;
  value?: T;
  refusal?: ConnectError;
}

/**
 * The one implementation of a store's rules (docs/protocol.md §3, §5) over a StoreDriver: collect,
 * commit, cancel, expiry at the deadline from `clock.now()` (never from when it is noticed),
 * tombstones, the open-session limits and the byte budget. Every method is one driver step
 * on one session (store-driver.ts); the sweeper (one timer, set for the earliest due time
 * the engine has written, only while something is stored) reclaims what nobody touches again.
 */
export function createSessionStore(options: SessionEngineOptions): SessionStore {
  const { driver, limits, clock } = options;
  const slack = options.sweepSlackMs ?? 250;
  const roomRefusals = new WeakSet<ConnectError>();
  const background = new Set<Promise<void>>();
  let sweepTimer: unknown;
  let sweepAt = Number.POSITIVE_INFINITY;
  let closed = false;

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

  /** Sweeps nobody awaits: close() waits for them, and a failed one retries later. */
  function sweepInBackground(): void {
    if (closed) return;
    const run = sweepNow().then(
      () => {},
      () => armSweeper(clock.now() + SWEEP_RETRY_MS),
    );
    background.add(run);
    void run.finally(() => background.delete(run));
  }

  function blank<T>(): EngineStep<T> {
    return {
      now: clock.now(),
      write: undefined,
      record: null,
      dueAt: 0,
      keepMs: 0,
      openDelta: 0,
      bytesDelta: 0,
      maxTombstones: limits.maxTombstonesPerDevice,
      expired: 0,
      value: undefined,
      refusal: undefined,
    };
  }

  /**
   * The step every synchronous step (driver.stepNow) fills: from its run to its answer
   * nothing awaits, so no other step can hold it meanwhile (no step object per COLLECT).
   * A driver's `step` (it may await, and run steps concurrently) gets a new one per run.
   */
  const shared = blank<unknown>();
  let lend = false;

  function begin<T>(): EngineStep<T> {
    if (!lend) return blank<T>();
    lend = false;
    const s = shared as EngineStep<T>;
    s.now = clock.now();
    s.write = undefined;
    s.record = null;
    s.dueAt = 0;
    s.keepMs = 0;
    s.openDelta = 0;
    s.bytesDelta = 0;
    s.maxTombstones = limits.maxTombstonesPerDevice;
    s.expired = 0;
    s.value = undefined;
    s.refusal = undefined;
    return s;
  }

  /** One step on a driver that never waits; the caller reads the step before any await. */
  function stepNow<A, T>(
    stepSync: NonNullable<StoreDriver["stepNow"]>,
    key: SessionKey,
    run: StepRun<A, EngineStep<T>>,
    arg: A,
  ): EngineStep<T> {
    lend = true;
    try {
      return stepSync(key, run, arg);
    } finally {
      lend = false;
    }
  }

  /** The step's one write; the gauge changes summed so far go with it (no change follows). */
  function put<T>(s: EngineStep<T>, record: SessionRecord | null, dueAt: number, until: number) {
    s.record = record;
    s.dueAt = dueAt;
    s.keepMs = Math.max(1, until - s.now);
    s.write = s;
  }

  function putOpen<T>(s: EngineStep<T>, session: OpenSession): void {
    const at = expiryAt(session, limits);
    put(s, session, at, at + limits.tombstoneTtlMs);
  }

  function putTomb<T>(s: EngineStep<T>, tomb: Tombstone): void {
    const end = tomb.sealedAt + limits.tombstoneTtlMs;
    put(s, tomb, end, end);
  }

  function sealOpen<T>(
    s: EngineStep<T>,
    session: OpenSession,
    state: SealedState,
    at: number,
    why?: "idle" | "hold",
  ): Tombstone {
    s.openDelta -= 1;
    s.bytesDelta -= bufferedBytes(session);
    const tomb = seal(session, state, at, why);
    putTomb(s, tomb);
    return tomb;
  }

  /** The live record, after applying any expiry that is due (sealed at its deadline). */
  function current<T>(s: EngineStep<T>, record: SessionRecord | undefined) {
    if (!record) return undefined;
    let found = record;
    if (found.state === "open") {
      if (s.now < expiryAt(found, limits)) return found;
      const expiry = expiryOf(found, limits);
      s.expired++;
      found = sealOpen(s, found, "expired", expiry.at, expiry.why);
    }
    if (s.now - found.sealedAt < limits.tombstoneTtlMs) return found;
    put(s, null, s.now, s.now);
    return undefined;
  }

  function refuse<T>(s: EngineStep<T>, err: ConnectError): EngineStep<T> {
    s.refusal = err;
    return s;
  }

  function answer<T>(s: EngineStep<T>, value: T): EngineStep<T> {
    s.value = value;
    return s;
  }

  /** After the step landed: its side effects. */
  function landed<T>(s: EngineStep<T>): void {
    if (s.expired > 0) options.onExpired?.(s.expired);
    if (s.write?.record) armSweeper(s.write.dueAt);
  }

  /** After the step landed: its side effects, then its answer or refusal. */
  function settle<T>(s: EngineStep<T>): T {
    landed(s);
    if (s.refusal) throw s.refusal;
    return s.value as T;
  }

  function roomFor<T>(view: StepView, s: EngineStep<T>, key: SessionKey): ConnectError | undefined {
    let perDevice = 0;
    for (const [id, deadline] of view.deviceOpen) {
      if (id !== key.sessionId && deadline > s.now) perDevice++;
    }
    let err: ConnectError | undefined;
    if (perDevice >= limits.maxOpenSessionsPerDevice) {
      err = resourceExhausted(
        LIMIT_NAMES.maxOpenSessionsPerDevice,
        `hardware_id ${key.hardwareId} already has ${perDevice} open sessions; commit or cancel one first`,
      );
    } else {
      const instance = view.gauges.openSessions + s.openDelta;
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

  function collectStep(view: StepView, key: SessionKey, chunk: Chunk): EngineStep<CollectResult> {
    const s = begin<CollectResult>();
    const record = current(s, view.record);
    if (record && record.state !== "open") return refuse(s, collectOnSealed(record, chunk.seq));
    if (!record) {
      const err = roomFor(view, s, key);
      if (err) return refuse(s, err);
    }
    const adds =
      utf8Length(chunk.text) +
      (chunk.audio?.data.length ?? 0) +
      (chunk.screenshot?.data.length ?? 0);
    const held = view.gauges.bufferedBytes + s.bytesDelta;
    if (held + adds > limits.maxBufferedBytesPerInstance) {
      return refuse(
        s,
        resourceExhausted(
          LIMIT_NAMES.maxBufferedBytesPerInstance,
          `this instance already buffers ${held} bytes of open holds; retry shortly`,
        ),
      );
    }
    const bytesBefore = record ? bufferedBytes(record) : 0;
    // collectChunk changes the session once every check has passed: a record the driver gives
    // away (view.owned) or a new one is changed in place, its lists too; any other is copied
    // first (collectChunk then replaces its lists) so that it stays as it was (it may be the
    // driver's live one).
    const inPlace = !record || view.owned === true;
    let session: OpenSession;
    if (!record) session = openSession(key, s.now);
    else session = inPlace ? record : copyOpen(record);
    let outcome: CollectResult["outcome"];
    try {
      outcome = collectChunk(session, chunk, limits, s.now, inPlace);
    } catch (err) {
      return refuse(s, err as ConnectError);
    }
    if (!record) s.openDelta += 1;
    s.bytesDelta += bufferedBytes(session) - bytesBefore;
    putOpen(s, session);
    return answer(s, { outcome, lastSeq: session.lastSeq, created: !record });
  }

  function commitStep(view: StepView, key: SessionKey, what: CommitArg): EngineStep<CommittedTurn> {
    const { pieces, turnId } = what;
    const s = begin<CommittedTurn>();
    const record = current(s, view.record);
    if (record && record.state !== "open") return refuse(s, commitOnSealed(record, limits));
    let turn: CommittedTurn;
    try {
      // A COMMIT without COLLECTs (single-shot clients) commits a hold of its own pieces.
      turn = commitTurn(record ?? openSession(key, s.now), pieces, limits, s.now, turnId);
    } catch (err) {
      return refuse(s, err as ConnectError);
    }
    if (record) sealOpen(s, record, "committed", s.now);
    else putTomb(s, seal(key, "committed", s.now));
    return answer(s, turn);
  }

  function cancelStep(view: StepView, key: SessionKey): EngineStep<CancelResult> {
    const s = begin<CancelResult>();
    const record = current(s, view.record);
    if (record && record.state !== "open") return answer(s, record.state);
    if (record) {
      sealOpen(s, record, "cancelled", s.now);
      return answer(s, "cancelled");
    }
    // Remember the cancel so chunks that overtook it on the wire are refused, not reopened.
    putTomb(s, seal(key, "cancelled", s.now));
    return answer(s, "unknown");
  }

  /** What is due for one session (expiry, forgetting); the sweep counts the expired. */
  function expireStep(view: StepView): EngineStep<number> {
    const s = begin<number>();
    const live = current(s, view.record);
    // Listed as due but not (a record from before a restart): written again with its due time.
    if (live && !s.write) {
      if (live.state === "open") putOpen(s, live);
      else putTomb(s, live);
    }
    return s;
  }

  /** Expires what is due and forgets old tombstones; arms the sweeper for the next due time. */
  async function sweepNow(): Promise<number> {
    const { keys, next } = await driver.due(clock.now());
    let expired = 0;
    for (const key of keys) {
      const s = await driver.step(key, expireStep, undefined);
      expired += s.expired;
      if (s.write?.record) armSweeper(s.write.dueAt); // its expired count is the sweep's
    }
    if (expired > 0) options.onExpired?.(expired);
    armSweeper(next);
    return expired;
  }

  // What a previous run of the process left in the driver (a restart) gets its timer.
  sweepInBackground();

  return {
    async collect(key: SessionKey, chunk: Chunk): Promise<CollectResult> {
      // A driver that never waits (memory) saves a promise and a turn of the microtask queue.
      const s = driver.stepNow
        ? stepNow(driver.stepNow, key, collectStep, chunk)
        : await driver.step(key, collectStep, chunk);
      if (!s.refusal || !roomRefusals.has(s.refusal)) return settle(s);
      landed(s);
      // Sessions past their deadline give their room back; then decide again, once.
      await sweepNow();
      return settle(await driver.step(key, collectStep, chunk));
    },

    async commit(key: SessionKey, pieces: Chunk[], turnId: string): Promise<CommittedTurn> {
      const what = { pieces, turnId };
      // The one step whose `run` reads the hold's audio and screenshot (store-driver.ts).
      return settle(
        driver.stepNow
          ? stepNow(driver.stepNow, key, commitStep, what)
          : await driver.step(key, commitStep, what, true),
      );
    },

    async cancel(key: SessionKey): Promise<CancelResult> {
      return settle(
        driver.stepNow
          ? stepNow(driver.stepNow, key, cancelStep, undefined)
          : await driver.step(key, cancelStep, undefined),
      );
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
