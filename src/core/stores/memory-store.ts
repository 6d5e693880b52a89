import { resourceExhausted, storeUnavailable } from "../errors.js";
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
import { utf8Length } from "../text-merge.js";
import { TombstoneIndex } from "./tombstone-index.js";

export interface MemoryStoreOptions {
  limits: Limits;
  clock: Clock;
  /** Called with the number of sessions that expired (lazily or by the sweeper). */
  onExpired?: (count: number) => void;
  /**
   * Synchronous write-through persistence (a Durable Object's SQLite KV): every record
   * is written or deleted in the same step that changes it, before memory changes, and
   * `load` rebuilds the store after a restart or eviction.
   */
  journal?: RecordJournal;
}

export interface RecordJournal {
  load(): Iterable<readonly [string, SessionRecord]>;
  put(key: string, record: SessionRecord): void;
  delete(key: string): void;
}

// Coalesces sweeps: many sessions expiring within this window cost one pass.
const SWEEP_SLACK_MS = 250;

/**
 * Single-process store. Every method body runs synchronously between awaits, so
 * each is atomic by construction. Expiry is decided from the clock on every
 * access, and a session is sealed at its deadline, not when it is noticed, so
 * answers never depend on when the sweeper last ran. The sweeper only reclaims
 * memory; its one timer is set for the earliest deadline and only while something
 * is stored, so an idle server has no timer at all.
 */
export function createMemoryStore(options: MemoryStoreOptions): SessionStore {
  const { limits, clock, journal } = options;
  const open = new Map<string, OpenSession>();
  const openPerDevice = new Map<string, number>();
  const tombs = new TombstoneIndex(
    limits.maxTombstonesPerDevice,
    limits.maxOpenSessionsPerInstance,
  );
  let buffered = 0;
  let sweepTimer: unknown;
  let sweepAt = Number.POSITIVE_INFINITY;
  let lastSweepExpired = 0;

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

  /** Journal first: if persisting fails, memory has not changed and the caller is told. */
  function persist(k: string, record: SessionRecord): void {
    if (!journal) return;
    try {
      journal.put(k, record);
    } catch (err) {
      throw storeUnavailable(err);
    }
  }

  function unpersist(k: string): void {
    try {
      journal?.delete(k);
    } catch {
      // A record that outlives its delete is forgotten by the next load's expiry check.
    }
  }

  function track(session: OpenSession, k: string): void {
    open.set(k, session);
    openPerDevice.set(session.hardwareId, (openPerDevice.get(session.hardwareId) ?? 0) + 1);
    buffered += bufferedBytes(session);
    armSweeper(expiryOf(session, limits).at);
  }

  function untrack(k: string, session: OpenSession): void {
    open.delete(k);
    buffered -= bufferedBytes(session);
    const n = (openPerDevice.get(session.hardwareId) ?? 1) - 1;
    if (n === 0) openPerDevice.delete(session.hardwareId);
    else openPerDevice.set(session.hardwareId, n);
  }

  function remember(k: string, tomb: Tombstone): Tombstone {
    for (const evicted of tombs.add(k, tomb)) unpersist(evicted);
    armSweeper(tomb.sealedAt + limits.tombstoneTtlMs);
    return tomb;
  }

  /** Replaces an OPEN session with its tombstone (same key: one journal write). */
  function sealOpen(
    k: string,
    session: OpenSession,
    state: SealedState,
    at: number,
    expiredBy?: "idle" | "hold",
  ): Tombstone {
    const tomb = seal(session, state, at, expiredBy);
    persist(k, tomb);
    untrack(k, session);
    return remember(k, tomb);
  }

  function forgetTomb(k: string): void {
    if (tombs.delete(k)) unpersist(k);
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
      forgetTomb(k);
      return undefined;
    }
    const tomb = tombs.get(k);
    if (tomb && now - tomb.sealedAt >= limits.tombstoneTtlMs) {
      forgetTomb(k);
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
    for (const [k, tomb] of tombs.entries()) {
      const end = tomb.sealedAt + limits.tombstoneTtlMs;
      if (now >= end) forgetTomb(k);
      else next = Math.min(next, end);
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

  function checkBytes(chunk: Chunk): void {
    const adds =
      utf8Length(chunk.text) +
      (chunk.audio?.data.length ?? 0) +
      (chunk.screenshot?.data.length ?? 0);
    if (buffered + adds > limits.maxBufferedBytesPerInstance) {
      throw resourceExhausted(
        LIMIT_NAMES.maxBufferedBytesPerInstance,
        `this instance already buffers ${buffered} bytes of open holds; retry shortly`,
      );
    }
  }

  /** Room for a new session, reclaiming sessions past their deadline before refusing. */
  function makeRoom(hardwareId: string): void {
    try {
      checkRoom(hardwareId);
    } catch {
      sweepNow();
      checkRoom(hardwareId);
    }
  }

  if (journal) {
    // Rebuild after a restart: records keep their times, so expiry is decided as before.
    for (const [k, record] of journal.load()) {
      if (record.state === "open") track(record, k);
      else remember(k, record);
    }
  }

  return {
    async collect(key: SessionKey, chunk: Chunk): Promise<CollectResult> {
      const now = clock.now();
      const k = keyOf(key);
      const record = current(k, now);
      if (record && record.state !== "open") throw collectOnSealed(record, chunk.seq);
      if (!record) makeRoom(key.hardwareId);
      checkBytes(chunk);
      const session = record ?? openSession(key, now);
      const bytesBefore = bufferedBytes(session);
      // collectChunk changes the session only once every limit holds; keep what a failed
      // journal write must undo (its arrays are replaced, never edited, except seqs).
      const before = journal ? { ...session, seqs: session.seqs.slice() } : undefined;
      const outcome = collectChunk(session, chunk, limits, now);
      try {
        persist(k, session);
      } catch (err) {
        Object.assign(session, before);
        throw err;
      }
      if (record) buffered += bufferedBytes(session) - bytesBefore;
      else track(session, k);
      return { outcome, lastSeq: session.lastSeq, created: record === undefined };
    },

    async commit(key: SessionKey, pieces: Chunk[], turnId: string): Promise<CommittedTurn> {
      const now = clock.now();
      const k = keyOf(key);
      const record = current(k, now);
      if (record && record.state !== "open") throw commitOnSealed(record, limits);
      // A COMMIT without COLLECTs (single-shot clients) commits a hold of its own pieces.
      const turn = commitTurn(record ?? openSession(key, now), pieces, limits, now, turnId);
      if (record) sealOpen(k, record, "committed", now);
      else {
        const tomb = seal(key, "committed", now);
        persist(k, tomb);
        remember(k, tomb);
      }
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
      const tomb = seal(key, "cancelled", now);
      persist(k, tomb);
      remember(k, tomb);
      return "unknown";
    },

    async sweep(): Promise<number> {
      sweepNow();
      return lastSweepExpired;
    },

    async stats(): Promise<StoreStats> {
      return { openSessions: open.size, bufferedBytes: buffered };
    },

    async ping(): Promise<void> {},

    async close(): Promise<void> {
      if (sweepTimer !== undefined) clock.clearTimer(sweepTimer);
      sweepTimer = undefined;
      sweepAt = Number.POSITIVE_INFINITY;
      open.clear();
      tombs.clear();
      openPerDevice.clear();
      buffered = 0;
    },
  };
}
