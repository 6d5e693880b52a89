import { ConnectError } from "@connectrpc/connect";
import { resourceExhausted, storeUnavailable, unavailable } from "../../core/errors.js";
import { LIMIT_NAMES, type Limits } from "../../core/limits.js";
import type {
  CancelResult,
  Clock,
  CollectResult,
  SessionStore,
  StoreStats,
} from "../../core/ports.js";
import {
  type Chunk,
  type CommittedTurn,
  collectChunk,
  commitTurn,
  expiryOf,
  type OpenSession,
  openSession,
  type SessionKey,
  seal,
  type Tombstone,
} from "../../core/session.js";
import { collectOnSealed, commitOnSealed } from "../../core/session-errors.js";
import { utf8Length } from "../../core/text-merge.js";
import {
  asSession,
  type BlobRef,
  blobRefs,
  buffered,
  concat,
  decodeRecord,
  encodeRecord,
  InFlight,
  type Key,
  keyBytes,
  type Mutation,
  type Refs,
  type StoredOpen,
  type StoredRecord,
  Tx,
  toStored,
  u64,
  valueBytes,
} from "./deno-kv-records.js";

// The part of Deno KV this store uses, declared here so core imports neither Deno's types nor
// @deno/kv: `Deno.openKv()` on Deno and `openKv()` from @deno/kv on Node both satisfy it.
export type DenoKvKey = readonly (string | number | bigint | boolean | Uint8Array)[];
export interface DenoKvEntry {
  readonly key: DenoKvKey;
  readonly value: unknown;
  readonly versionstamp: string | null;
}
export interface DenoKvAtomic {
  check(...checks: { key: DenoKvKey; versionstamp: string | null }[]): DenoKvAtomic;
  set(key: DenoKvKey, value: unknown, options?: { expireIn?: number }): DenoKvAtomic;
  delete(key: DenoKvKey): DenoKvAtomic;
  sum(key: DenoKvKey, n: bigint): DenoKvAtomic;
  commit(): Promise<{ ok: boolean }>;
}
export interface DenoKv {
  get(key: DenoKvKey): Promise<DenoKvEntry>;
  list(selector: { prefix: DenoKvKey }): AsyncIterable<DenoKvEntry>;
  atomic(): DenoKvAtomic;
}

export interface DenoKvStoreOptions {
  kv: DenoKv;
  limits: Limits;
  clock: Clock;
  /** First parts of every key this store writes (default ["ptt"]). */
  prefix?: readonly string[];
  /** Called with the number of sessions that expired (lazily or by the sweeper). */
  onExpired?: (count: number) => void;
}

// Deno KV's limits (deno ext/kv config.rs): a value is at most 64 KiB; one atomic write at most
// 1,000 mutations and 800 KiB of keys and values (a set counts its key twice, as Deno does).
const PART_BYTES = 60 * 1024;
const MAX_ATOMIC_BYTES = 800 * 1024;
const MAX_MUTATIONS = 1000;
const KV_LIMIT = "deno_kv_atomic_write";
const MAX_ATTEMPTS = 16;
/** expireIn lets Deno KV reclaim what no sweep reached: real time, this long after the rules' end. */
const SAFETY_MS = 60_000;
/** A sweep lists every open session: it runs this long after a deadline, coalescing the next ones. */
const SWEEP_SLACK_MS = 5_000;
const SWEEP_RETRY_MS = 5_000;
const SWEEP_BATCH = 16;
const COUNTER_SHARDS = 8;
const MAX_EVICTIONS = 32;
const U64 = 1n << 64n;

/**
 * Sessions in Deno KV. Every method is one atomic step: read the records with their
 * versionstamps, compute with core's pure rules on copies, then one `atomic()` that checks
 * every record it read and writes the result; a failed check reads again (bounded, then
 * UNAVAILABLE). Steps on one device are queued within a process, so only other processes
 * make checks fail. Expiry is decided from `clock.now()` at the deadline, as in the memory store.
 *
 * Keys, under `prefix`:
 * - `s,hw,sid,i`: the record (open session or tombstone) as UTF-8 JSON in ≤ 60 KiB chunks; the
 *   first chunk is rewritten by every change, so checking it checks the record;
 * - `b,hw,sid,ref,i`: audio pieces and screenshots (≤ 60 KiB parts), written once; parts that
 *   would not fit in the step's atomic write (800 KiB) are written just before it, under a ref
 *   nothing names until the step lands (on a conflict or crash, expireIn reclaims them);
 * - `o,hw,sid` → deadline: the open sessions of a device (its open-session limit counts the ones
 *   whose deadline has not passed; sweep() lists them all); `v,hw`: the device's version, checked
 *   and bumped by every creation and seal of its sessions, so those are serialized per device;
 * - `g,hw,sid` → sealedAt: the device's tombstones (beyond max_tombstones_per_device it loses its
 *   own oldest; sweep() forgets the ones past their TTL);
 * - `n,bucket,shard,open|bytes`: instance-wide gauges as Deno KV `sum`s (no read, so no conflict
 *   and no hot key: 8 shards by device). See `readCounters` for what they make approximate.
 * Every set has an expireIn a minute past the time the rules forget it: Deno KV reclaims what no
 * sweep reached (real time; a safety net, never what an answer depends on).
 *
 * Deno KV's limits: no value is over 60 KiB, and a step whose write would pass 800 KiB or 1,000
 * mutations writes its blobs first (above), so a COLLECT of any size the limits allow is stored.
 * Only a record (text and chunk bookkeeping) that alone passes 800 KiB, which the default limits
 * cannot reach, is refused: RESOURCE_EXHAUSTED `deno_kv_atomic_write: ...`, nothing stored.
 *
 * What is approximate (the rest is exact, one atomic step):
 * - max_open_sessions_per_instance and max_buffered_bytes_per_instance count the whole database
 *   (every process sharing it) from the `n` counters, read before the write without a check (a
 *   check would make them one hot key): admissions racing in other processes can each pass and
 *   together go past a limit by what they add. Within one process they never do (InFlight).
 * - stats() reads the same counters; see readCounters.
 * - Tombstones are bounded per device only (the memory store also bounds their total);
 *   expireIn reclaims them.
 * - sweep() lists every open session (and tombstone): O(open sessions) reads per sweep, in every
 *   process whose sweeper is armed.
 */
export function createDenoKvStore(options: DenoKvStoreOptions): SessionStore {
  const { kv, limits, clock } = options;
  const P = options.prefix ?? ["ptt"];
  const keys = {
    record: (k: SessionKey, i: number): Key => [...P, "s", k.hardwareId, k.sessionId, i],
    blob: (k: SessionKey, ref: string, i: number): Key => [
      ...P,
      "b",
      k.hardwareId,
      k.sessionId,
      ref,
      i,
    ],
    open: (k: SessionKey): Key => [...P, "o", k.hardwareId, k.sessionId],
    grave: (k: SessionKey): Key => [...P, "g", k.hardwareId, k.sessionId],
    device: (hw: string): Key => [...P, "v", hw],
    counter: (bucket: number, hw: string, what: "open" | "bytes"): Key => [
      ...P,
      "n",
      bucket,
      shardOf(hw),
      what,
    ],
  };
  // Sessions of one bucket are all past their hold limit once it is over; its counters then only
  // hold what Deno KV reclaimed without a seal, so they stop counting (and sweep() drops them).
  const bucketMs = Math.max(limits.maxHoldMs, 1000);
  const bucketOf = (t: number) => t - (t % bucketMs);
  const bucketLive = (bucket: number, now: number) =>
    now < bucket + 2 * bucketMs + limits.maxHoldMs;
  const inflight = new InFlight();
  const queues = new Map<string, Promise<void>>();
  const roomRefusals = new WeakSet<object>();
  const running = new Set<Promise<void>>();
  let closed = false;
  let sweepTimer: unknown;
  let sweepAt = Number.POSITIVE_INFINITY;

  const expireIn = (until: number, now: number) => Math.max(1, Math.ceil(until - now + SAFETY_MS));
  const keyAt = (key: DenoKvKey, i: number) => key[P.length + 1 + i];

  async function listAll(prefix: Key): Promise<DenoKvEntry[]> {
    const out: DenoKvEntry[] = [];
    for await (const e of kv.list({ prefix })) out.push(e);
    return out;
  }

  /**
   * Steps on one device's sessions run one after another within this process: they share the
   * device's version key, so only other processes can make their checks fail.
   */
  function serialized<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const run = (queues.get(id) ?? Promise.resolve()).then(fn);
    const tail = run.then(
      () => {},
      () => {},
    );
    queues.set(id, tail);
    void tail.then(() => {
      if (queues.get(id) === tail) queues.delete(id);
    });
    return run;
  }

  /** Work nobody awaits: tracked so close() can wait for it, and never an unhandled rejection. */
  function background(job: () => Promise<unknown>): void {
    if (closed) return;
    const p: Promise<void> = job()
      .then(
        () => {},
        () => {}, // a cleanup that fails leaves garbage that expireIn reclaims
      )
      .finally(() => running.delete(p));
    running.add(p);
  }

  function armSweeper(deadline: number): void {
    if (closed || deadline >= sweepAt) return;
    if (sweepTimer !== undefined) clock.clearTimer(sweepTimer);
    sweepAt = deadline;
    sweepTimer = clock.setTimer(
      () => {
        sweepTimer = undefined;
        sweepAt = Number.POSITIVE_INFINITY;
        background(() =>
          sweepNow().then(
            ({ next }) => armSweeper(next),
            () => armSweeper(clock.now() + SWEEP_RETRY_MS),
          ),
        );
      },
      Math.max(0, deadline - clock.now()) + SWEEP_SLACK_MS,
    );
  }

  /** Writes one step's changes: false when a check failed. */
  async function commit(tx: Tx, staged: Set<string>): Promise<boolean> {
    const sums = [...tx.sums.values()].filter((s) => s.n !== 0);
    let writes = [...tx.writes.values()];
    if (writes.length === 0 && sums.length === 0) return true; // read only: the snapshot answered
    const checked = [...tx.checks.values()].reduce((n, c) => n + keyBytes(c.key), 0);
    const size = (list: Mutation[]) =>
      checked +
      sums.reduce((n, s) => n + 2 * keyBytes(s.key) + 8, 0) +
      list.reduce(
        (n, m) => n + keyBytes(m.key) + (m.expireIn ? keyBytes(m.key) + valueBytes(m.value) : 0),
        0,
      );
    const fits = (list: Mutation[]) =>
      size(list) <= MAX_ATOMIC_BYTES && list.length + sums.length <= MAX_MUTATIONS;
    if (!fits(writes)) {
      const blobs = writes.filter((m) => m.blob);
      writes = writes.filter((m) => !m.blob);
      if (!fits(writes)) {
        throw resourceExhausted(
          KV_LIMIT,
          `this change needs ${size(writes)} bytes in ${writes.length + sums.length} mutations of one Deno KV atomic write; at most ${MAX_ATOMIC_BYTES} bytes and ${MAX_MUTATIONS} mutations are allowed`,
        );
      }
      await stage(blobs.filter((m) => !staged.has(JSON.stringify(m.key))));
      for (const m of blobs) staged.add(JSON.stringify(m.key));
    }
    let op = kv.atomic();
    for (const c of tx.checks.values()) op = op.check(c);
    for (const m of writes) {
      op = m.expireIn ? op.set(m.key, m.value, { expireIn: m.expireIn }) : op.delete(m.key);
    }
    for (const s of sums) op = op.sum(s.key, s.n < 0 ? U64 + BigInt(s.n) : BigInt(s.n));
    return (await op.commit()).ok;
  }

  /** Blob parts written ahead of the step that will name them, in writes that fit Deno KV. */
  async function stage(blobs: Mutation[]): Promise<void> {
    let batch: Mutation[] = [];
    let bytes = 0;
    const flush = async () => {
      let op = kv.atomic();
      for (const m of batch) op = op.set(m.key, m.value, { expireIn: m.expireIn as number });
      if (batch.length > 0 && !(await op.commit()).ok) throw new Error("staging blob parts failed");
      batch = [];
      bytes = 0;
    };
    for (const m of blobs) {
      const cost = 2 * keyBytes(m.key) + valueBytes(m.value);
      if (bytes + cost > MAX_ATOMIC_BYTES) await flush();
      batch.push(m);
      bytes += cost;
    }
    await flush();
  }

  /**
   * Runs a step until its atomic write lands. A ConnectError from the step (a refusal) still
   * writes what the step decided before it (a session found expired is sealed), then is thrown.
   */
  async function attempt<T>(step: (tx: Tx) => Promise<T>, report = true): Promise<T> {
    const staged = new Set<string>();
    for (let i = 0; i < MAX_ATTEMPTS; i++) {
      // Another process wrote what this step read: back off a little (jittered), read again.
      if (i > 0) await new Promise((r) => setTimeout(r, Math.random() * Math.min(2 ** i, 50)));
      const tx = new Tx();
      let value: T | undefined;
      let refusal: ConnectError | undefined;
      try {
        try {
          value = await step(tx);
        } catch (err) {
          if (!(err instanceof ConnectError)) throw err;
          refusal = err;
        }
        if (!(await commit(tx, staged))) continue;
      } catch (err) {
        throw storeError(err);
      } finally {
        for (const f of tx.finally) f();
      }
      if (report && tx.expired > 0) options.onExpired?.(tx.expired);
      for (const job of tx.after) background(job);
      armSweeper(tx.wake);
      if (refusal) throw refusal;
      return value as T;
    }
    throw unavailable(
      `session store: the records kept changing during ${MAX_ATTEMPTS} attempts (contention); retry`,
    );
  }

  async function readRecord(tx: Tx, key: SessionKey): Promise<StoredRecord | undefined> {
    const entries = await listAll([...P, "s", key.hardwareId, key.sessionId]);
    const head = entries.find((e) => keyAt(e.key, 2) === 0);
    tx.check(keys.record(key, 0), head?.versionstamp ?? null);
    for (const e of entries) {
      const i = keyAt(e.key, 2);
      if (typeof i === "number") tx.recordChunks = Math.max(tx.recordChunks, i + 1);
    }
    const parts = entries.map((e) => e.value);
    const whole =
      head !== undefined &&
      entries.every((e, i) => keyAt(e.key, 2) === i && e.versionstamp === head.versionstamp) &&
      parts.every((v) => v instanceof Uint8Array);
    // A record Deno KV has partly reclaimed (expireIn) is gone: its rules had forgotten it.
    return whole ? decodeRecord(parts as Uint8Array[]) : undefined;
  }

  function putRecord(tx: Tx, key: SessionKey, record: StoredRecord | undefined, ttl: number): void {
    const bytes = record ? encodeRecord(record) : new Uint8Array(0);
    const n = Math.ceil(bytes.length / PART_BYTES);
    for (let i = 0; i < n; i++) {
      tx.set(keys.record(key, i), bytes.slice(i * PART_BYTES, (i + 1) * PART_BYTES), ttl);
    }
    for (let i = n; i < tx.recordChunks; i++) tx.delete(keys.record(key, i));
  }

  /**
   * Instance-wide gauges: exact sums of what every landed step added, over all processes sharing
   * the database. Approximate in two ways: sessions past their deadline count until a step or
   * sweep() seals them (as in the memory store), and a session Deno KV reclaimed unsealed (no
   * sweep for its whole expireIn) counts until its bucket ends (at most 3 × max_hold_ms).
   */
  async function readCounters(now: number): Promise<{ open: number; bytes: number }> {
    let open = 0;
    let bytes = 0;
    for (const e of await listAll([...P, "n"])) {
      const bucket = keyAt(e.key, 0);
      if (typeof bucket !== "number" || !bucketLive(bucket, now)) continue;
      if (keyAt(e.key, 2) === "open") open += u64(e.value);
      else bytes += u64(e.value);
    }
    return { open, bytes };
  }

  function count(tx: Tx, bucket: number, hw: string, opens: number, bytes: number): void {
    tx.add(keys.counter(bucket, hw, "open"), opens);
    tx.add(keys.counter(bucket, hw, "bytes"), bytes);
  }

  /** The device's version, checked at commit: creations and seals of one device serialize. */
  function readDevice(tx: Tx, hw: string): Promise<number> {
    return tx.once(`v:${hw}`, async () => {
      const entry = await kv.get(keys.device(hw));
      tx.check(keys.device(hw), entry.versionstamp);
      return typeof entry.value === "number" ? entry.value : 0;
    });
  }

  function bumpDevice(tx: Tx, hw: string, version: number, now: number): void {
    const ttl = expireIn(now + limits.maxHoldMs + limits.tombstoneTtlMs, now);
    tx.set(keys.device(hw), version + 1, ttl);
  }

  /** Seals under a tombstone: the device keeps at most max_tombstones_per_device, losing its oldest. */
  async function addTomb(tx: Tx, key: SessionKey, tomb: Tombstone, now: number): Promise<void> {
    const end = tomb.sealedAt + limits.tombstoneTtlMs;
    putRecord(tx, key, tomb, expireIn(end, now));
    tx.set(keys.grave(key), tomb.sealedAt, expireIn(end, now));
    const [graves, version] = await Promise.all([
      listAll([...P, "g", key.hardwareId]),
      readDevice(tx, key.hardwareId),
    ]);
    bumpDevice(tx, key.hardwareId, version, now);
    const others = graves
      .map((e) => ({ sessionId: keyAt(e.key, 1), sealedAt: e.value, versionstamp: e.versionstamp }))
      .filter(
        (g): g is { sessionId: string; sealedAt: number; versionstamp: string } =>
          typeof g.sessionId === "string" &&
          g.sessionId !== key.sessionId &&
          typeof g.sealedAt === "number",
      );
    const live = others.filter((g) => now - g.sealedAt < limits.tombstoneTtlMs);
    live.sort((a, b) => a.sealedAt - b.sealedAt);
    const evicted = live.slice(0, Math.max(0, live.length + 1 - limits.maxTombstonesPerDevice));
    const forgotten = others.filter((g) => now - g.sealedAt >= limits.tombstoneTtlMs);
    for (const g of [...evicted, ...forgotten].slice(0, MAX_EVICTIONS)) {
      const other = { hardwareId: key.hardwareId, sessionId: g.sessionId };
      // The entry exists exactly while its record is that tombstone (one chunk): check the entry.
      tx.check(keys.grave(other), g.versionstamp);
      tx.delete(keys.grave(other));
      tx.delete(keys.record(other, 0));
    }
  }

  /** Ends an OPEN session: gauges down, out of the device's index, its blobs deleted once sealed. */
  function dropOpen(tx: Tx, key: SessionKey, stored: StoredOpen): void {
    tx.delete(keys.open(key));
    count(tx, stored.bucket, key.hardwareId, -1, -buffered(stored));
    const blobs = blobRefs(stored);
    if (blobs.length > 0) tx.after.push(() => deleteBlobs(key, blobs));
  }

  /** The live record, after applying any expiry that is due (sealed at its deadline). */
  async function current(
    tx: Tx,
    key: SessionKey,
    record: StoredRecord | undefined,
    now: number,
  ): Promise<StoredOpen | Tombstone | undefined> {
    if (!record) return undefined;
    if (record.state === "open") {
      const expiry = expiryOf(asSession(record).session, limits);
      if (now < expiry.at) return record;
      tx.expired++;
      dropOpen(tx, key, record);
      const tomb = seal(key, "expired", expiry.at, expiry.why);
      if (now - tomb.sealedAt < limits.tombstoneTtlMs) {
        await addTomb(tx, key, tomb, now);
        return tomb;
      }
      putRecord(tx, key, undefined, 0);
      return undefined;
    }
    if (now - record.sealedAt < limits.tombstoneTtlMs) return record;
    putRecord(tx, key, undefined, 0);
    tx.delete(keys.grave(key));
    return undefined;
  }

  async function readBlobs(key: SessionKey, refs: BlobRef[]): Promise<Map<string, Uint8Array>> {
    const parts = new Map<string, Uint8Array[]>(refs.map((r) => [r.ref, []]));
    for (const e of await listAll([...P, "b", key.hardwareId, key.sessionId])) {
      const list = parts.get(keyAt(e.key, 2) as string);
      if (list && e.value instanceof Uint8Array) list.push(e.value);
    }
    const out = new Map<string, Uint8Array>();
    for (const r of refs) {
      const data = concat(parts.get(r.ref) ?? []);
      if (data.length !== r.bytes) {
        throw unavailable(
          `session store: session ${key.sessionId} lost part of its audio or screenshot`,
        );
      }
      out.set(r.ref, data);
    }
    return out;
  }

  async function deleteBlobs(key: SessionKey, refs: BlobRef[]): Promise<void> {
    const all = refs.flatMap((r) =>
      Array.from({ length: Math.ceil(r.bytes / PART_BYTES) }, (_, i) => keys.blob(key, r.ref, i)),
    );
    for (let i = 0; i < all.length; i += 500) {
      let op = kv.atomic();
      for (const k of all.slice(i, i + 500)) op = op.delete(k);
      await op.commit();
    }
  }

  function writeOpen(
    tx: Tx,
    key: SessionKey,
    session: OpenSession,
    stored: StoredOpen,
    now: number,
  ): void {
    const expiry = expiryOf(session, limits);
    const ttl = expireIn(expiry.at + limits.tombstoneTtlMs, now);
    putRecord(tx, key, stored, ttl);
    tx.set(keys.open(key), expiry.at, ttl);
    tx.wake = Math.min(tx.wake, expiry.at);
  }

  /** The device's sessions whose deadline has not passed (the others are sealed after this step). */
  async function openOfDevice(tx: Tx, key: SessionKey, now: number): Promise<number> {
    let open = 0;
    for (const e of await listAll([...P, "o", key.hardwareId])) {
      const other = { hardwareId: key.hardwareId, sessionId: keyAt(e.key, 1) as string };
      if (other.sessionId === key.sessionId) continue;
      if (typeof e.value === "number" && e.value > now) open++;
      else tx.after.push(() => expireKey(other));
    }
    return open;
  }

  /** Room for a new session; a refusal here is retried once after a sweep (see collect). */
  function checkRoom(key: SessionKey, perDevice: number, instanceOpen: number): void {
    const room = (err: ConnectError) => {
      roomRefusals.add(err);
      return err;
    };
    if (perDevice >= limits.maxOpenSessionsPerDevice) {
      throw room(
        resourceExhausted(
          LIMIT_NAMES.maxOpenSessionsPerDevice,
          `hardware_id ${key.hardwareId} already has ${perDevice} open sessions; commit or cancel one first`,
        ),
      );
    }
    if (instanceOpen >= limits.maxOpenSessionsPerInstance) {
      throw room(
        resourceExhausted(
          LIMIT_NAMES.maxOpenSessionsPerInstance,
          `this instance already holds ${instanceOpen} open sessions`,
        ),
      );
    }
  }

  async function collectStep(
    tx: Tx,
    key: SessionKey,
    chunk: Chunk,
    refs: Refs,
  ): Promise<CollectResult> {
    const now = clock.now();
    const read = inflight.startRead();
    tx.finally.push(() => inflight.endRead(read));
    const [record, counts] = await Promise.all([readRecord(tx, key), readCounters(now)]);
    const cur = await current(tx, key, record, now);
    if (cur && cur.state !== "open") throw collectOnSealed(cur, chunk.seq);
    const [perDevice, version] = cur
      ? [0, 0]
      : await Promise.all([openOfDevice(tx, key, now), readDevice(tx, key.hardwareId)]);
    // From here until the hold nothing awaits, so the checks see this process's other admissions.
    const pending = inflight.pending(read);
    if (!cur) checkRoom(key, perDevice, counts.open + pending.opens);
    const adds =
      utf8Length(chunk.text) +
      (chunk.audio?.data.length ?? 0) +
      (chunk.screenshot?.data.length ?? 0);
    const held = counts.bytes + pending.bytes;
    if (held + adds > limits.maxBufferedBytesPerInstance) {
      throw resourceExhausted(
        LIMIT_NAMES.maxBufferedBytesPerInstance,
        `this instance already buffers ${held} bytes of open holds; retry shortly`,
      );
    }
    const { session, stubs, screenshot } = cur
      ? asSession(cur)
      : { session: openSession(key, now), stubs: new Map(), screenshot: undefined };
    const outcome = collectChunk(session, chunk, limits, now);
    tx.finally.push(inflight.hold(cur ? 0 : 1, adds));
    if (!cur) bumpDevice(tx, key.hardwareId, version, now);
    const bucket = cur?.bucket ?? bucketOf(now);
    const next = toStored(session, stubs, screenshot, cur, refs, bucket);
    count(
      tx,
      bucket,
      key.hardwareId,
      cur ? 0 : 1,
      buffered(next.record) - (cur ? buffered(cur) : 0),
    );
    writeOpen(tx, key, session, next.record, now);
    const blobTtl = expireIn(session.createdAt + limits.maxHoldMs, now);
    for (const b of next.blobs) {
      for (let i = 0; i * PART_BYTES < b.data.length; i++) {
        tx.set(
          keys.blob(key, b.ref, i),
          b.data.slice(i * PART_BYTES, (i + 1) * PART_BYTES),
          blobTtl,
          true,
        );
      }
    }
    if (next.dropped.length > 0) tx.after.push(() => deleteBlobs(key, next.dropped));
    return { outcome, lastSeq: session.lastSeq, created: !cur };
  }

  async function commitStep(
    tx: Tx,
    key: SessionKey,
    pieces: Chunk[],
    turnId: string,
  ): Promise<CommittedTurn> {
    const now = clock.now();
    const cur = await current(tx, key, await readRecord(tx, key), now);
    if (cur && cur.state !== "open") throw commitOnSealed(cur, limits);
    // A COMMIT without COLLECTs (single-shot clients) commits a hold of its own pieces.
    const hold = cur
      ? asSession(cur, await readBlobs(key, blobRefs(cur))).session
      : openSession(key, now);
    const turn = commitTurn(hold, pieces, limits, now, turnId);
    if (cur) dropOpen(tx, key, cur);
    await addTomb(tx, key, seal(key, "committed", now), now);
    return turn;
  }

  async function cancelStep(tx: Tx, key: SessionKey): Promise<CancelResult> {
    const now = clock.now();
    const cur = await current(tx, key, await readRecord(tx, key), now);
    if (cur && cur.state !== "open") return cur.state;
    if (cur) dropOpen(tx, key, cur);
    // Remember the cancel so chunks that overtook it on the wire are refused, not reopened.
    await addTomb(tx, key, seal(key, "cancelled", now), now);
    return cur ? "cancelled" : "unknown";
  }

  /** Seals one session if its deadline passed; returns how many expired (0 or 1). */
  function expireKey(key: SessionKey): Promise<number> {
    return serialized(key.hardwareId, () =>
      attempt(async (tx) => {
        await current(tx, key, await readRecord(tx, key), clock.now());
        return tx.expired;
      }, false),
    );
  }

  /** Expires what is due, forgets tombstones past their TTL, drops ended counter buckets. */
  async function sweepNow(): Promise<{ expired: number; next: number }> {
    const now = clock.now();
    let next = Number.POSITIVE_INFINITY;
    const due: SessionKey[] = [];
    for (const e of await listAll([...P, "o"])) {
      const [hardwareId, sessionId, at] = [keyAt(e.key, 0), keyAt(e.key, 1), e.value];
      if (typeof hardwareId !== "string" || typeof sessionId !== "string") continue;
      if (typeof at === "number" && at > now) next = Math.min(next, at);
      else due.push({ hardwareId, sessionId });
    }
    let expired = 0;
    for (let i = 0; i < due.length; i += SWEEP_BATCH) {
      const counts = await Promise.all(due.slice(i, i + SWEEP_BATCH).map(expireKey));
      expired += counts.reduce((a, b) => a + b, 0);
    }
    // Tombstones do not wake the sweeper: any sweep forgets the old ones, expireIn the rest.
    const forgotten = (await listAll([...P, "g"])).filter(
      (e) => now >= (typeof e.value === "number" ? e.value : 0) + limits.tombstoneTtlMs,
    );
    for (let i = 0; i < forgotten.length; i += 30) {
      let op = kv.atomic();
      for (const e of forgotten.slice(i, i + 30)) {
        const k = { hardwareId: keyAt(e.key, 0) as string, sessionId: keyAt(e.key, 1) as string };
        op = op.check(e).delete(e.key).delete(keys.record(k, 0));
      }
      await op.commit(); // a conflict means a step changed one of them: the next sweep decides
    }
    const ended = (await listAll([...P, "n"])).filter((e) => {
      const bucket = keyAt(e.key, 0);
      return typeof bucket === "number" && !bucketLive(bucket, now);
    });
    if (ended.length > 0) await ended.reduce((op, e) => op.delete(e.key), kv.atomic()).commit();
    if (expired > 0) options.onExpired?.(expired);
    return { expired, next };
  }

  return {
    async collect(key: SessionKey, chunk: Chunk): Promise<CollectResult> {
      const refs = { audio: crypto.randomUUID(), screenshot: crypto.randomUUID() };
      const run = () =>
        serialized(key.hardwareId, () => attempt((tx) => collectStep(tx, key, chunk, refs)));
      try {
        return await run();
      } catch (err) {
        if (!(err instanceof ConnectError && roomRefusals.has(err))) throw err;
        // Sessions past their deadline give their room back; then decide again, once.
        await sweepNow().catch((e: unknown) => Promise.reject(storeError(e)));
        return run();
      }
    },

    commit(key: SessionKey, pieces: Chunk[], turnId: string): Promise<CommittedTurn> {
      return serialized(key.hardwareId, () => attempt((tx) => commitStep(tx, key, pieces, turnId)));
    },

    cancel(key: SessionKey): Promise<CancelResult> {
      return serialized(key.hardwareId, () => attempt((tx) => cancelStep(tx, key)));
    },

    async sweep(): Promise<number> {
      try {
        return (await sweepNow()).expired;
      } catch (err) {
        throw storeError(err);
      }
    },

    async stats(): Promise<StoreStats> {
      try {
        const c = await readCounters(clock.now());
        return { openSessions: c.open, bufferedBytes: c.bytes };
      } catch (err) {
        throw storeError(err);
      }
    },

    async ping(): Promise<void> {
      try {
        await kv.get([...P, "ping"]);
      } catch (err) {
        throw storeError(err);
      }
    },

    /** Stops the sweeper and waits for background cleanups; the caller closes `kv`. */
    async close(): Promise<void> {
      closed = true;
      if (sweepTimer !== undefined) clock.clearTimer(sweepTimer);
      sweepTimer = undefined;
      sweepAt = Number.POSITIVE_INFINITY;
      while (running.size > 0) await Promise.allSettled([...running]);
    },
  };
}

function shardOf(hardwareId: string): number {
  let h = 0;
  for (let i = 0; i < hardwareId.length; i++) h = (h * 31 + hardwareId.charCodeAt(i)) | 0;
  return Math.abs(h) % COUNTER_SHARDS;
}

function storeError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  return storeUnavailable(err);
}
