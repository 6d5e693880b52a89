import type { StoreStats } from "./ports.js";
import type { SessionKey, SessionRecord } from "./session.js";

/**
 * The driver port: where the session engine (session-engine.ts) keeps its records. The
 * engine holds every rule (merge, seals, expiry, limits, messages); a driver only stores.
 *
 * One engine step works on ONE session of one device:
 *   1. the driver reads a StepView: the session's record, the device's open sessions
 *      (id → deadline) and the instance-wide gauges;
 *   2. the engine's `run` computes, purely and synchronously, a Step: at most one record
 *      to write with its gauge changes (and, for itself, the answer or the refusal);
 *   3. the driver writes the Step's record if nothing the view read of the DEVICE (its
 *      record, its open sessions) changed since 1, else it reads again and calls `run`
 *      again (a bounded number of times, then UNAVAILABLE); it resolves with the Step
 *      that landed, and the engine answers from it.
 *
 * What every driver must honour:
 * - Atomic per device: a write lands only against the state its `run` saw. A driver may
 *   check a per-device version bumped by every write (Redis: one Lua script comparing the
 *   version, every key of a device under one {hash tag}; Deno KV: `atomic().check()`), or
 *   run a device's steps one at a time (memory, a Durable Object: read, run and write with
 *   no await in between).
 * - `run` never changes the view it is given (the memory driver hands out its live
 *   records) unless the view is `owned`, has no side effects, and may be called more than once. A refusal is an
 *   answer too: a step that refuses may still write (a session it found expired is sealed).
 * - The gauges are read without a check (a hot key otherwise): across instances the
 *   instance-wide limits may be passed by what concurrent admissions add. Within one
 *   process a driver keeps them exact.
 * - Writing a tombstone adds it to the device's tombstones; beyond `maxTombstones` the
 *   driver forgets the device's first sealed ones and their records, in the same write.
 * - Deleting (record null) or sealing removes the session from the device's open sessions;
 *   writing an open session records `dueAt` as its deadline there.
 * - Expiry: the engine decides it from its clock, never from the driver's. `keepMs` is a
 *   TTL hint: the driver may drop the record (and its index entries) that long after the
 *   write, never sooner (the engine has forgotten it by then). `dueAt` (engine clock) is
 *   when the engine wants to see the record again; `due(now)` lists what is due.
 * - Failures that are not the engine's refusals (storage down, conflicts that never end)
 *   reject with a ConnectError, Code.Unavailable (core's storeUnavailable / unavailable).
 *
 * Round trips: a shared driver needs a read and a conditional write per step, plus a re-read
 * and a re-write per conflict; one that keeps its last view of a device and whose write returns
 * the device on a conflict (Redis) makes the steps that find the device as it left it one
 * round trip (the chunks of a hold reaching the same instance).
 */
export interface StoreDriver {
  /**
   * Runs `run` on a fresh view until its write lands; resolves with that Step.
   *
   * `payloads`: true when `run` reads an open record's audio bytes and screenshot (a
   * COMMIT). Otherwise `run` reads their sizes only (audioBytes, screenshotBytes), and a
   * driver that keeps them apart from the record (Deno KV: blobs) may hand out the pieces
   * with empty `data`. `run` writes back the very piece objects it was handed (a copy of
   * the list, never of a piece), so the driver tells kept pieces from new ones by identity.
   * Drivers that keep whole records ignore it.
   */
  step<A, S extends Step>(
    key: SessionKey,
    run: StepRun<A, S>,
    arg: A,
    payloads?: boolean,
  ): Promise<S>;
  /**
   * `step` without the promise, for a driver whose steps never wait (memory, which keeps
   * whole records: `payloads` does not apply): the engine calls it instead on every
   * COLLECT, COMMIT and CANCEL. Throws what `step` rejects with.
   */
  stepNow?<A, S extends Step>(key: SessionKey, run: StepRun<A, S>, arg: A): S;
  /** Sessions whose dueAt has passed (to sweep), and the earliest dueAt of the others. */
  due(now: number): Promise<{ keys: SessionKey[]; next: number }>;
  /** Instance-wide gauges: open sessions and the bytes they buffer. */
  gauges(): Promise<StoreStats>;
  /** Resolves when the storage answers (readiness). */
  ping(): Promise<void>;
  /** Stops background work; the caller closes what it opened (a client, a database). */
  close(): Promise<void>;
}

/**
 * The engine's side of a step: `run(view, key, arg)` with the key and the argument the engine
 * passed to `step` (the engine's step functions are made once: no closure per call).
 */
export type StepRun<A, S extends Step> = (view: StepView, key: SessionKey, arg: A) => S;

export interface StepView {
  /** The session's record (open or a tombstone); undefined when none is stored. */
  readonly record: SessionRecord | undefined;
  /**
   * The device's open sessions: (session id, deadline: the dueAt they were written with)
   * pairs; a Map will do.
   */
  readonly deviceOpen: Iterable<readonly [string, number]>;
  /** Instance-wide gauges as of this read. */
  readonly gauges: Readonly<StoreStats>;
  /**
   * true: `record` is the driver's to give away, and `run` may change an open record in place
   * (only once every check has passed, so a refusal leaves it as it was): the step is sure to
   * land and is never run again (the memory driver without a journal: no copy per COLLECT).
   */
  readonly owned?: boolean | undefined;
}

/** What `run` decided to store; the engine keeps its answer in the same object. */
export interface Step {
  write?: StepWrite | undefined;
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
  /** Tombstones a device keeps (max_tombstones_per_device); its first sealed go first. */
  maxTombstones: number;
}
