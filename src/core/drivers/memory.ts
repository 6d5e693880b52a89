import { storeUnavailable } from "../errors.js";
import type { Limits } from "../limits.js";
import type { Clock, SessionStore, StoreStats } from "../ports.js";
import { bufferedBytes, type SessionKey, type SessionRecord } from "../session.js";
import { createSessionStore } from "../session-engine.js";
import type { Step, StepRun, StepView, StepWrite, StoreDriver } from "../store-driver.js";

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
 * A device's sessions: its open ones (the StepView's `deviceOpen`: each slot's session id and
 * dueAt, read through the slot, so a COLLECT that moves a deadline leaves the device alone) and
 * its tombstones. A device mostly holds one session at a time, kept in a field: a Map per device
 * was the largest part of an idle held session's memory. A step finds its session here by
 * hardware id, then session id: no key string is built per call (a Map keyed by
 * "hw\nsession" was 42 % of an in-process COLLECT's samples, building and hashing it).
 */
class Device implements Iterable<readonly [string, number]> {
  /** The device's only open session, while it has exactly one. */
  one: JournalEntry | undefined = undefined;
  /** Two or more open sessions, by session id. */
  many: Map<string, JournalEntry> | undefined = undefined;
  /** Its tombstones by session id, in the order they were sealed (made with the first one). */
  tombs: Map<string, JournalEntry> | undefined = undefined;

  /** The session's slot, open or sealed. */
  get(id: string): JournalEntry | undefined {
    const one = this.one;
    if (one !== undefined && one.record.sessionId === id) return one;
    return this.many?.get(id) ?? this.tombs?.get(id);
  }

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
    return this.one === undefined && this.many === undefined && !this.tombs?.size;
  }

  *[Symbol.iterator](): Iterator<readonly [string, number]> {
    if (this.many) {
      for (const [id, slot] of this.many) yield [id, slot.dueAt];
    } else if (this.one) yield [this.one.record.sessionId, this.one.dueAt];
  }

  /** Every slot, open and sealed. */
  *slots(): Generator<JournalEntry> {
    if (this.one) yield this.one;
    if (this.many) yield* this.many.values();
    if (this.tombs) yield* this.tombs.values();
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
  const devices = new Map<string, Device>();
  /** Every tombstone, in the order they were sealed: the total bound forgets the first. */
  const sealed = new Set<JournalEntry>();
  const gauges: StoreStats = { openSessions: 0, bufferedBytes: 0 };
  /** The journal's key of a session. */
  const keyOf = (hardwareId: string, sessionId: string) => `${hardwareId}\n${sessionId}`;

  /** Takes `slot` (as it was stored: open or sealed) out of its device. */
  function remove(device: Device, slot: JournalEntry): void {
    const { hardwareId, sessionId, state } = slot.record;
    if (state === "open") device.deleteOpen(sessionId);
    else {
      device.tombs?.delete(sessionId);
      sealed.delete(slot);
    }
    if (device.isEmpty()) devices.delete(hardwareId);
  }

  /** Tombstones past the bounds: the record goes (its journal delete may fail: load forgets it). */
  function forget(slot: JournalEntry): void {
    const { hardwareId, sessionId } = slot.record;
    try {
      journal?.delete(keyOf(hardwareId, sessionId));
    } catch {
      // A tombstone that outlives its delete is forgotten by the engine at its time.
    }
    const device = devices.get(hardwareId);
    if (device) remove(device, slot);
  }

  function add(slot: JournalEntry, maxTombstones: number): void {
    const { record } = slot;
    let device = devices.get(record.hardwareId);
    if (!device) {
      device = new Device();
      devices.set(record.hardwareId, device);
    }
    if (record.state === "open") {
      device.addOpen(slot);
      return;
    }
    device.tombs ??= new Map();
    device.tombs.set(record.sessionId, slot);
    sealed.add(slot);
    // A device past its bound loses its own oldest, never another's; the total is the last resort.
    if (device.tombs.size > maxTombstones) forget(first(device.tombs.values()));
    if (sealed.size > maxTotal) forget(first(sealed));
  }

  /** `device`, `slot`: what the step read (no second lookup on the COLLECT path). */
  function apply(
    key: SessionKey,
    write: StepWrite,
    device: Device | undefined,
    slot: JournalEntry | undefined,
  ): void {
    const { record } = write;
    if (journal) {
      const k = keyOf(key.hardwareId, key.sessionId);
      try {
        if (record) journal.put(k, { record, dueAt: write.dueAt });
        else journal.delete(k);
      } catch (err) {
        throw storeUnavailable(err);
      }
    }
    gauges.openSessions += write.openDelta;
    gauges.bufferedBytes += write.bytesDelta;
    if (slot && record?.state === "open" && slot.record.state === "open") {
      // The common COLLECT: same session, still open; its device reads the deadline here.
      slot.record = record;
      slot.dueAt = write.dueAt;
      return;
    }
    if (slot && device) remove(device, slot);
    if (record) add({ record, dueAt: write.dueAt }, write.maxTombstones);
  }

  /**
   * The one StepView, refilled by every step (`run` is synchronous and keeps no view). Without
   * a journal nothing can refuse the write once `run` returns: the record is the step's to
   * change in place (with one, a failed put must leave memory as it was).
   */
  const read: StepView & { record: SessionRecord | undefined; deviceOpen: Device | typeof NONE } = {
    record: undefined,
    deviceOpen: NONE,
    gauges,
    owned,
  };

  function stepNow<A, S extends Step>(key: SessionKey, run: StepRun<A, S>, arg: A): S {
    const device = devices.get(key.hardwareId);
    const slot = device?.get(key.sessionId);
    read.record = slot?.record;
    read.deviceOpen = device ?? NONE;
    let step: S;
    try {
      step = run(read, key, arg);
    } finally {
      read.record = undefined;
      read.deviceOpen = NONE;
    }
    if (step.write) apply(key, step.write, device, slot);
    return step;
  }

  if (journal) {
    // Rebuild after a restart: records keep their times, so the engine decides expiry as before.
    for (const [, entry] of journal.load()) {
      if (entry.record.state === "open") {
        gauges.openSessions++;
        gauges.bufferedBytes += bufferedBytes(entry.record);
      }
      add(entry, Number.POSITIVE_INFINITY);
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
      for (const device of devices.values()) {
        for (const { record, dueAt } of device.slots()) {
          if (dueAt <= now)
            keys.push({ hardwareId: record.hardwareId, sessionId: record.sessionId });
          else next = Math.min(next, dueAt);
        }
      }
      return { keys, next };
    },

    async gauges() {
      return { ...gauges };
    },

    async ping() {},

    async close() {
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

function first<T>(items: Iterable<T>): T {
  for (const item of items) return item;
  throw new Error("unreachable: empty set");
}
