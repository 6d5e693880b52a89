import { resourceExhausted } from "../errors.js";
import { LIMIT_NAMES, type Limits } from "../limits.js";
import type { CancelResult, Clock, CollectResult, SessionStore, StoreStats } from "../ports.js";
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
} from "../session.js";
import { collectOnSealed, commitOnSealed } from "../session-errors.js";

export interface MemoryStoreOptions {
  limits: Limits;
  clock: Clock;
  /** Called with the number of sessions that expired (lazily or by the sweeper). */
  onExpired?: (count: number) => void;
  /**
   * Synchronous write-through persistence (a Durable Object's SQLite KV): every record
   * is written or deleted in the same step that changes it, and `load` rebuilds the
   * store after a restart or eviction.
   */
  journal?: RecordJournal;
}

export interface RecordJournal {
  load(): Iterable<[string, SessionRecord]>;
  put(key: string, record: SessionRecord): void;
  delete(key: string): void;
}

/**
 * Single-process store. Every method body runs synchronously between awaits, so
 * each is atomic by construction. Expiry is decided from the clock on every
 * access, and a session is sealed at its deadline, not when it is noticed, so
 * answers never depend on when the sweeper last ran. The sweeper only reclaims
 * memory; it is armed only while something is stored, so an idle server has no
 * timer at all.
 */
export function createMemoryStore(options: MemoryStoreOptions): SessionStore {
  const { limits, clock } = options;
  const open = new Map<string, OpenSession>();
  // Insertion order is sealing order: the oldest tombstone is always first.
  const sealed = new Map<string, Tombstone>();
  const openPerDevice = new Map<string, number>();
  const journal = options.journal;
  let sweepTimer: unknown;
  let sweepAt = Number.POSITIVE_INFINITY;
  let lastSweepExpired = 0;

  // Tombstones are small, but ids are the client's to invent: bound them like open sessions.
  const maxTombstones = limits.maxOpenSessionsPerInstance;
  // Coalesces sweeps: many sessions expiring within this window cost one pass.
  const SWEEP_SLACK_MS = 250;

  function keyOf(key: SessionKey): string {
    return `${key.hardwareId}\n${key.sessionId}`;
  }

  /** One timer, set for the earliest deadline it has been told of (an alarm on Workers). */
  function armSweeper(deadline: number): void {
    if (deadline >= sweepAt) return;
    if (sweepTimer !== undefined) clock.clearTimer(sweepTimer);
    sweepAt = deadline;
    sweepTimer = clock.setTimer(
      () => {
        sweepTimer = undefined;
        sweepAt = Number.POSITIVE_INFINITY;
        const next = sweepNow();
        if (next < Number.POSITIVE_INFINITY) armSweeper(next);
      },
      Math.max(0, deadline - clock.now()) + SWEEP_SLACK_MS,
    );
  }

  function save(k: string, record: SessionRecord): void {
    journal?.put(k, record);
  }

  function forget(k: string): void {
    journal?.delete(k);
  }

  function bury(k: string, tomb: Tombstone): Tombstone {
    sealed.delete(k);
    sealed.set(k, tomb);
    save(k, tomb);
    if (sealed.size > maxTombstones) {
      const oldest = sealed.keys().next().value;
      if (oldest !== undefined) {
        sealed.delete(oldest);
        forget(oldest);
      }
    }
    armSweeper(tomb.sealedAt + limits.tombstoneTtlMs);
    return tomb;
  }

  function sealOpen(
    k: string,
    session: OpenSession,
    state: SealedState,
    at: number,
    expiredBy?: "idle" | "hold",
  ): Tombstone {
    discard(k, session);
    return bury(k, seal(session, state, at, expiredBy));
  }

  /** Seals the session if its deadline passed; returns the tombstone then. */
  function expireIfDue(k: string, session: OpenSession, now: number): Tombstone | undefined {
    const expiry = expiryOf(session, limits);
    if (now < expiry.at) return undefined;
    return sealOpen(k, session, "expired", expiry.at, expiry.why);
  }

  /** The live record for a key, after applying any expiry that is due. */
  function current(k: string, now: number): OpenSession | Tombstone | undefined {
    const session = open.get(k);
    if (session) {
      const tomb = expireIfDue(k, session, now);
      if (!tomb) return session;
      options.onExpired?.(1);
      if (now - tomb.sealedAt < limits.tombstoneTtlMs) return tomb;
      sealed.delete(k);
      forget(k);
      return undefined;
    }
    const tomb = sealed.get(k);
    if (tomb && now - tomb.sealedAt >= limits.tombstoneTtlMs) {
      sealed.delete(k);
      forget(k);
      return undefined;
    }
    return tomb;
  }

  /** Expires what is due and forgets old tombstones; returns the next deadline. */
  function sweepNow(): number {
    const now = clock.now();
    let expired = 0;
    let next = Number.POSITIVE_INFINITY;
    for (const [k, session] of open) {
      if (expireIfDue(k, session, now)) expired++;
      else next = Math.min(next, expiryOf(session, limits).at);
    }
    for (const [k, tomb] of sealed) {
      const end = tomb.sealedAt + limits.tombstoneTtlMs;
      if (now >= end) {
        sealed.delete(k);
        forget(k);
      } else next = Math.min(next, end);
    }
    lastSweepExpired = expired;
    if (expired > 0) options.onExpired?.(expired);
    return next;
  }

  function checkRoom(hardwareId: string): void {
    const perDevice = openPerDevice.get(hardwareId) ?? 0;
    if (perDevice >= limits.maxOpenSessionsPerDevice) {
      throw resourceExhausted(
        LIMIT_NAMES.maxOpenSessionsPerDevice,
        `hardware_id ${hardwareId} already has ${perDevice} open sessions; commit or cancel one first`,
      );
    }
    if (open.size >= limits.maxOpenSessionsPerInstance) {
      throw resourceExhausted(
        LIMIT_NAMES.maxOpenSessionsPerInstance,
        `this instance already holds ${open.size} open sessions`,
      );
    }
  }

  function create(key: SessionKey, k: string, now: number): OpenSession {
    try {
      checkRoom(key.hardwareId);
    } catch {
      // Sessions past their deadline must not hold places: reclaim them, then decide.
      sweepNow();
      checkRoom(key.hardwareId);
    }
    const session = openSession(key, now);
    open.set(k, session);
    openPerDevice.set(key.hardwareId, (openPerDevice.get(key.hardwareId) ?? 0) + 1);
    armSweeper(expiryOf(session, limits).at);
    return session;
  }

  function discard(k: string, session: OpenSession): void {
    open.delete(k);
    forget(k);
    const n = (openPerDevice.get(session.hardwareId) ?? 1) - 1;
    if (n === 0) openPerDevice.delete(session.hardwareId);
    else openPerDevice.set(session.hardwareId, n);
  }

  if (journal) {
    // Rebuild after a restart: records keep their times, so expiry is decided as before.
    for (const [k, record] of journal.load()) {
      if (record.state === "open") {
        open.set(k, record);
        openPerDevice.set(record.hardwareId, (openPerDevice.get(record.hardwareId) ?? 0) + 1);
        armSweeper(expiryOf(record, limits).at);
      } else {
        sealed.set(k, record);
        armSweeper(record.sealedAt + limits.tombstoneTtlMs);
      }
    }
  }

  return {
    async collect(key: SessionKey, chunk: Chunk): Promise<CollectResult> {
      const now = clock.now();
      const k = keyOf(key);
      const record = current(k, now);
      if (record && record.state !== "open") throw collectOnSealed(record, chunk.seq);
      const session = record ?? create(key, k, now);
      try {
        const outcome = collectChunk(session, chunk, limits, now);
        save(k, session);
        return { outcome, lastSeq: session.lastSeq, created: record === undefined };
      } catch (err) {
        // A new session whose very first chunk was refused holds nothing: do not keep it.
        if (record === undefined) discard(k, session);
        throw err;
      }
    },

    async commit(key: SessionKey, pieces: Chunk[], turnId: string): Promise<CommittedTurn> {
      const now = clock.now();
      const k = keyOf(key);
      const record = current(k, now);
      if (record && record.state !== "open") throw commitOnSealed(record, limits);
      // A COMMIT without COLLECTs (single-shot clients) commits a hold of its own pieces.
      const turn = commitTurn(record ?? openSession(key, now), pieces, limits, now, turnId);
      if (record) sealOpen(k, record, "committed", now);
      else bury(k, seal(key, "committed", now));
      return turn;
    },

    async cancel(key: SessionKey): Promise<CancelResult> {
      const now = clock.now();
      const k = keyOf(key);
      const record = current(k, now);
      if (record && record.state !== "open") return record.state;
      if (record) {
        sealOpen(k, record, "cancelled", now);
        return "cancelled";
      }
      // Remember the cancel so chunks that overtook it on the wire are refused, not reopened.
      bury(k, seal(key, "cancelled", now));
      return "unknown";
    },

    async sweep(): Promise<number> {
      sweepNow();
      return lastSweepExpired;
    },

    async stats(): Promise<StoreStats> {
      let bytes = 0;
      for (const session of open.values()) bytes += bufferedBytes(session);
      return { openSessions: open.size, bufferedBytes: bytes };
    },

    async ping(): Promise<void> {},

    async close(): Promise<void> {
      if (sweepTimer !== undefined) clock.clearTimer(sweepTimer);
      sweepTimer = undefined;
      sweepAt = Number.POSITIVE_INFINITY;
      open.clear();
      sealed.clear();
      openPerDevice.clear();
    },
  };
}
