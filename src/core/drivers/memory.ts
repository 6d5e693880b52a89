import { storeUnavailable } from "../errors.js";
import type { Limits } from "../limits.js";
import type { Clock, SessionStore, StoreStats } from "../ports.js";
import { bufferedBytes, type SessionKey, type SessionRecord } from "../session.js";
import { createSessionStore } from "../session-engine.js";
import type { Step, StepRun, StepWrite, StoreDriver } from "../store-driver.js";

/** A record and when the engine wants to see it again (store-driver.ts). */
export interface JournalEntry {
  record: SessionRecord;
  dueAt: number;
}

/**
 * Synchronous write-through persistence (a Durable Object's SQLite KV): every write is
 * journaled before memory changes (a refused write changes nothing and answers
 * UNAVAILABLE), and `load` rebuilds the driver after a restart or eviction.
 */
export interface RecordJournal {
  load(): Iterable<readonly [string, JournalEntry]>;
  put(key: string, entry: JournalEntry): void;
  delete(key: string): void;
}

export interface MemoryDriverOptions {
  /** Tombstones kept in all, the first sealed forgotten first (client ids are unbounded). */
  maxTombstones?: number;
  journal?: RecordJournal | undefined;
}

/**
 * A device's open sessions (the StepView's `deviceOpen`: each slot's session id and dueAt, read
 * through the slot, so a COLLECT that moves a deadline leaves the device alone) and its
 * tombstones. A device mostly holds one session at a time, kept in a field: a Map per device
 * was the largest part of an idle held session's memory.
 */
class Device implements Iterable<readonly [string, number]> {
  /** The device's only open session, while it has exactly one. */
  one: JournalEntry | undefined = undefined;
  /** Two or more open sessions, by session id. */
  many: Map<string, JournalEntry> | undefined = undefined;
  /** Its tombstones' keys, in the order they were sealed (made with the first one). */
  sealed: Set<string> | undefined = undefined;

  addOpen(slot: JournalEntry): void {
    const id = slot.record.sessionId;
    if (this.many) this.many.set(id, slot);
    else if (this.one === undefined || this.one.record.sessionId === id) this.one = slot;
    else {
      this.many = new Map([
        [this.one.record.sessionId, this.one],
        [id, slot],
      ]);
      this.one = undefined;
    }
  }

  deleteOpen(id: string): void {
    if (!this.many) {
      if (this.one?.record.sessionId === id) this.one = undefined;
      return;
    }
    this.many.delete(id);
    if (this.many.size > 1) return;
    for (const only of this.many.values()) this.one = only;
    this.many = undefined;
  }

  isEmpty(): boolean {
    return this.one === undefined && this.many === undefined && !this.sealed?.size;
  }

  *[Symbol.iterator](): Iterator<readonly [string, number]> {
    if (this.many) {
      for (const [id, slot] of this.many) yield [id, slot.dueAt];
    } else if (this.one) yield [this.one.record.sessionId, this.one.dueAt];
  }
}

const NONE: Iterable<readonly [string, number]> = [];

/**
 * Records in Maps. A step reads, runs and writes with no await in between, so it is
 * atomic by construction (one process, one thread: a Durable Object too, with a journal).
 */
export function createMemoryDriver(options: MemoryDriverOptions = {}): StoreDriver {
  const { journal } = options;
  const owned = journal === undefined;
  const maxTotal = options.maxTombstones ?? Number.POSITIVE_INFINITY;
  const slots = new Map<string, JournalEntry>();
  const devices = new Map<string, Device>();
  const sealed = new Set<string>();
  const gauges: StoreStats = { openSessions: 0, bufferedBytes: 0 };
  const keyOf = (hardwareId: string, sessionId: string) => `${hardwareId}\n${sessionId}`;

  function remove(k: string, record: SessionRecord): void {
    slots.delete(k);
    sealed.delete(k);
    const device = devices.get(record.hardwareId);
    if (!device) return;
    device.deleteOpen(record.sessionId);
    device.sealed?.delete(k);
    if (device.isEmpty()) devices.delete(record.hardwareId);
  }

  /** Tombstones past the bounds: the record goes (its journal delete may fail: load forgets it). */
  function forget(k: string): void {
    const slot = slots.get(k);
    if (!slot) return;
    try {
      journal?.delete(k);
    } catch {
      // A tombstone that outlives its delete is forgotten by the engine at its time.
    }
    remove(k, slot.record);
  }

  function add(k: string, slot: JournalEntry, maxTombstones: number): void {
    const { record } = slot;
    slots.set(k, slot);
    let device = devices.get(record.hardwareId);
    if (!device) {
      device = new Device();
      devices.set(record.hardwareId, device);
    }
    if (record.state === "open") {
      device.addOpen(slot);
      return;
    }
    device.sealed ??= new Set();
    device.sealed.add(k);
    sealed.add(k);
    // A device past its bound loses its own oldest, never another's; the total is the last resort.
    if (device.sealed.size > maxTombstones) forget(first(device.sealed));
    if (sealed.size > maxTotal) forget(first(sealed));
  }

  /** `slot`: what the step read for `k` (no second lookup on the COLLECT path). */
  function apply(k: string, write: StepWrite, slot: JournalEntry | undefined): void {
    const { record } = write;
    try {
      if (record) journal?.put(k, { record, dueAt: write.dueAt });
      else journal?.delete(k);
    } catch (err) {
      throw storeUnavailable(err);
    }
    gauges.openSessions += write.openDelta;
    gauges.bufferedBytes += write.bytesDelta;
    if (slot && record?.state === "open" && slot.record.state === "open") {
      // The common COLLECT: same session, still open; its device reads the deadline here.
      slot.record = record;
      slot.dueAt = write.dueAt;
      return;
    }
    if (slot) remove(k, slot.record);
    if (record) add(k, { record, dueAt: write.dueAt }, write.maxTombstones);
  }

  /**
   * The one StepView, refilled by every step (`run` is synchronous and keeps no view): the
   * device is looked up only if `run` asks (a new session's room). Without a journal nothing
   * can refuse the write once `run` returns: the record is the step's to change in place
   * (with one, a failed put must leave memory as it was).
   */
  const read = {
    record: undefined as SessionRecord | undefined,
    hardwareId: "",
    gauges,
    owned,
    get deviceOpen(): Iterable<readonly [string, number]> {
      return devices.get(this.hardwareId) ?? NONE;
    },
  };

  function stepNow<A, S extends Step>(key: SessionKey, run: StepRun<A, S>, arg: A): S {
    const k = keyOf(key.hardwareId, key.sessionId);
    const slot = slots.get(k);
    read.record = slot?.record;
    read.hardwareId = key.hardwareId;
    let step: S;
    try {
      step = run(read, key, arg);
    } finally {
      read.record = undefined;
    }
    if (step.write) apply(k, step.write, slot);
    return step;
  }

  if (journal) {
    // Rebuild after a restart: records keep their times, so the engine decides expiry as before.
    for (const [k, entry] of journal.load()) {
      if (entry.record.state === "open") {
        gauges.openSessions++;
        gauges.bufferedBytes += bufferedBytes(entry.record);
      }
      add(k, entry, Number.POSITIVE_INFINITY);
    }
  }

  return {
    stepNow,

    async step(key, run, arg) {
      return stepNow(key, run, arg);
    },

    async due(now) {
      const keys: SessionKey[] = [];
      let next = Number.POSITIVE_INFINITY;
      for (const { record, dueAt } of slots.values()) {
        if (dueAt <= now) keys.push({ hardwareId: record.hardwareId, sessionId: record.sessionId });
        else next = Math.min(next, dueAt);
      }
      return { keys, next };
    },

    async gauges() {
      return { ...gauges };
    },

    async ping() {},

    async close() {
      slots.clear();
      devices.clear();
      sealed.clear();
      gauges.openSessions = 0;
      gauges.bufferedBytes = 0;
    },
  };
}

export interface MemoryStoreOptions {
  limits: Readonly<Limits>;
  clock: Clock;
  /** Called with the number of sessions that expired (lazily or by the sweeper). */
  onExpired?: ((count: number) => void) | undefined;
  journal?: RecordJournal | undefined;
}

/** The session engine over the memory driver: the default store of every runtime. */
export function createMemoryStore(options: MemoryStoreOptions): SessionStore {
  const driver = createMemoryDriver({
    journal: options.journal,
    maxTombstones: options.limits.maxOpenSessionsPerInstance,
  });
  return createSessionStore({ ...options, driver });
}

function first(keys: Iterable<string>): string {
  for (const k of keys) return k;
  throw new Error("unreachable: empty set");
}
