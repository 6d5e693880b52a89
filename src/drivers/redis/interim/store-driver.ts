// INTERIM: the session engine's driver port and engine as the "engine" branch has them (not yet
// on main when the Redis driver landed), copied unchanged but for import paths and formatting.
// When they land in src/core, delete this folder and import them from there (issue 10, part 1).
import type { StoreStats } from "../../../core/ports.js";
import type { SessionKey, SessionRecord } from "../../../core/session.js";

/**
 * The driver port: where the session engine (session-engine.ts) keeps its records. The
 * engine holds every rule (merge, seals, expiry, limits, messages); a driver only stores.
 *
 * One engine step works on ONE session of one device:
 *   1. the driver reads a StepView: the session's record, the device's open sessions
 *      (id → deadline) and the instance-wide gauges;
 *   2. the engine's `run` computes, purely and synchronously, a Step: at most one record
 *      to write (with its gauge changes) and the answer;
 *   3. the driver writes the Step's record if nothing the view read of the DEVICE (its
 *      record, its open sessions) changed since step 1, else it reads again and calls `run`
 *      again (a bounded number of times, then UNAVAILABLE); then it calls `answer()`.
 *
 * What every driver must honour:
 * - Atomic per device: a write lands only against the state its `run` saw. A driver may
 *   check a per-device version bumped by every write (Redis: one Lua script, WATCH-free,
 *   all of a device's keys under one {hash tag}; Deno KV: `atomic().check()`), or run
 *   steps of a device one at a time (memory, a Durable Object: read, run and write happen
 *   with no await in between).
 * - `run` never changes the view it is given (the memory driver hands out its live
 *   records) and may be called more than once; side effects go in `answer`, which runs once,
 *   after the write landed (or after a read-only step). `answer` throws a refusal.
 * - The gauges are read without a check (a hot key otherwise): across instances the
 *   instance-wide limits may be passed by what concurrent admissions add. Within one
 *   process a driver keeps them exact.
 * - Writing a tombstone adds it to the device's tombstones; beyond `maxTombstones` the
 *   driver forgets the device's oldest (by sealedAt) and their records, in the same write.
 * - Deleting (record null) or sealing removes the session from the device's open sessions;
 *   writing an open session records `dueAt` as its deadline there.
 * - Expiry: the engine decides expiry from its clock, never from the driver. `keepMs` is a
 *   TTL hint: the driver may drop the record (and its index entries) that long after the
 *   write, never sooner (the engine has forgotten it by then). `dueAt` (engine clock) is
 *   when the engine wants to see the record again; `due(now)` lists what is due.
 * - Errors that are not the engine's refusals (storage down, conflicts that never end)
 *   are ConnectErrors with Code.Unavailable (core's storeUnavailable / unavailable).
 *
 * Round trips: a shared driver needs one read and one conditional write per step (two
 * round trips per COLLECT), plus re-reads only on conflicts.
 */
export interface StoreDriver {
  step<T>(key: SessionKey, run: (view: StepView) => Step<T>): Promise<T>;
  /** Sessions whose dueAt has passed (to sweep), and the earliest dueAt of the others. */
  due(now: number): Promise<{ keys: SessionKey[]; next: number }>;
  /** Instance-wide gauges: open sessions and the bytes they buffer. */
  gauges(): Promise<StoreStats>;
  /** Resolves when the storage answers (readiness). */
  ping(): Promise<void>;
  /** Stops background work; the caller closes what it opened (a client, a database). */
  close(): Promise<void>;
}

export interface StepView {
  /** The session's record (open or a tombstone); undefined when none is stored. */
  readonly record: SessionRecord | undefined;
  /** The device's open sessions: session id → deadline (the dueAt they were written with). */
  readonly deviceOpen: ReadonlyMap<string, number>;
  /** Instance-wide gauges as of this read. */
  readonly gauges: Readonly<StoreStats>;
}

export interface Step<T> {
  write?: StepWrite | undefined;
  /** The step's answer, or its refusal (thrown); called once, after `write` landed. */
  answer: () => T;
}

export interface StepWrite {
  /** The session's new record; null deletes it. */
  record: SessionRecord | null;
  /** Open: its deadline. Tombstone: when it is forgotten. (Engine clock, ms.) */
  dueAt: number;
  /** The driver may drop the record this long after the write (a TTL), never sooner. */
  keepMs: number;
  /** Change of the open-sessions gauge (-1, 0 or +1) and of the buffered-bytes gauge. */
  openDelta: number;
  bytesDelta: number;
  /** Tombstones a device keeps (max_tombstones_per_device); its oldest go first. */
  maxTombstones: number;
}
