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
  type SessionKey,
  type SessionRecord,
  seal,
} from "../session.js";
import { collectOnSealed, commitOnSealed } from "../session-errors.js";

export interface MemoryStoreOptions {
  limits: Limits;
  clock: Clock;
  /** Called once per session that expires (lazily or by the sweeper). */
  onExpired?: (count: number) => void;
}

/**
 * Single-process store. Every method body runs synchronously between awaits, so
 * each is atomic by construction. A sweeper reclaims expired sessions and old
 * tombstones; it is armed only while something is stored, so an idle server
 * has no timer at all. Correctness never waits for it: every access checks
 * expiry itself.
 */
export function createMemoryStore(options: MemoryStoreOptions): SessionStore {
  const { limits, clock } = options;
  const records = new Map<string, SessionRecord>();
  const openPerDevice = new Map<string, number>();
  let open = 0;
  let sweepTimer: unknown;

  const sweepEvery = Math.max(1000, Math.min(limits.idleTtlMs, limits.tombstoneTtlMs) / 4);

  function keyOf(key: SessionKey): string {
    return `${key.hardwareId}\n${key.sessionId}`;
  }

  function armSweeper(): void {
    if (sweepTimer !== undefined || records.size === 0) return;
    sweepTimer = clock.setTimer(() => {
      sweepTimer = undefined;
      sweepNow();
      armSweeper();
    }, sweepEvery);
  }

  function forgetOpen(session: OpenSession): void {
    open--;
    const n = (openPerDevice.get(session.hardwareId) ?? 1) - 1;
    if (n === 0) openPerDevice.delete(session.hardwareId);
    else openPerDevice.set(session.hardwareId, n);
  }

  /** Replaces an OPEN session with its tombstone. */
  function sealOpen(
    k: string,
    session: OpenSession,
    state: "committed" | "cancelled" | "expired",
    now: number,
    expiredBy?: "idle" | "hold",
  ) {
    forgetOpen(session);
    const tomb = seal(session, state, now, expiredBy);
    records.set(k, tomb);
    return tomb;
  }

  /** The live record for a key, after applying any expiry that is due. */
  function current(k: string, now: number): SessionRecord | undefined {
    const record = records.get(k);
    if (!record) return undefined;
    if (record.state === "open") {
      const why = expiryOf(record, limits, now);
      if (why) {
        options.onExpired?.(1);
        return sealOpen(k, record, "expired", now, why);
      }
      return record;
    }
    if (now - record.sealedAt >= limits.tombstoneTtlMs) {
      records.delete(k);
      return undefined;
    }
    return record;
  }

  function sweepNow(): number {
    const now = clock.now();
    let expired = 0;
    for (const [k, record] of records) {
      if (record.state === "open") {
        const why = expiryOf(record, limits, now);
        if (why) {
          sealOpen(k, record, "expired", now, why);
          expired++;
        }
      } else if (now - record.sealedAt >= limits.tombstoneTtlMs) {
        records.delete(k);
      }
    }
    if (expired > 0) options.onExpired?.(expired);
    return expired;
  }

  function create(key: SessionKey, k: string, now: number): OpenSession {
    if (open >= limits.maxOpenSessionsPerInstance) {
      throw resourceExhausted(
        LIMIT_NAMES.maxOpenSessionsPerInstance,
        `this instance already holds ${open} open sessions`,
      );
    }
    const perDevice = openPerDevice.get(key.hardwareId) ?? 0;
    if (perDevice >= limits.maxOpenSessionsPerDevice) {
      throw resourceExhausted(
        LIMIT_NAMES.maxOpenSessionsPerDevice,
        `hardware_id ${key.hardwareId} already has ${perDevice} open sessions; commit or cancel one first`,
      );
    }
    const session = openSession(key, now);
    records.set(k, session);
    open++;
    openPerDevice.set(key.hardwareId, perDevice + 1);
    armSweeper();
    return session;
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
        return { outcome, lastSeq: session.lastSeq, created: record === undefined };
      } catch (err) {
        // A new session whose very first chunk was refused holds nothing: do not keep it.
        if (record === undefined) {
          records.delete(k);
          forgetOpen(session);
        }
        throw err;
      }
    },

    async commit(key: SessionKey, pieces: Chunk[], turnId: string): Promise<CommittedTurn> {
      const now = clock.now();
      const k = keyOf(key);
      const record = current(k, now);
      if (record && record.state !== "open") throw commitOnSealed(record, limits);
      // A COMMIT without COLLECTs (single-shot clients) commits a hold of its own pieces.
      const session = record ?? openSession(key, now);
      const turn = commitTurn(session, pieces, limits, now, turnId);
      if (record) sealOpen(k, record, "committed", now);
      else {
        records.set(k, seal(key, "committed", now));
        armSweeper();
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
      records.set(k, seal(key, "cancelled", now));
      armSweeper();
      return "unknown";
    },

    async sweep(): Promise<number> {
      return sweepNow();
    },

    async stats(): Promise<StoreStats> {
      let bytes = 0;
      for (const record of records.values()) {
        if (record.state === "open") bytes += bufferedBytes(record);
      }
      return { openSessions: open, bufferedBytes: bytes };
    },

    async ping(): Promise<void> {},

    async close(): Promise<void> {
      if (sweepTimer !== undefined) clock.clearTimer(sweepTimer);
      sweepTimer = undefined;
      records.clear();
      openPerDevice.clear();
      open = 0;
    },
  };
}
