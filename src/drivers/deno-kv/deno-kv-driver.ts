import { ConnectError } from "@connectrpc/connect";
import { concatBytes } from "../../core/bytes.js";
import { resourceExhausted, storeUnavailable, unavailable } from "../../core/errors.js";
import type { Limits } from "../../core/limits.js";
import type { Clock, SessionStore, StoreStats } from "../../core/ports.js";
import type { SessionKey } from "../../core/session.js";
import { createSessionStore } from "../../core/session-engine.js";
import type { Step, StepRun, StepWrite, StoreDriver } from "../../core/store-driver.js";
import type { DenoKv, DenoKvEntry, DenoKvKey } from "./deno-kv-api.js";
import {
  type Blob,
  decodeParts,
  encodeParts,
  PART_BYTES,
  pack,
  unpack,
} from "./deno-kv-records.js";

export interface DenoKvStoreOptions {
  kv: DenoKv;
  limits: Limits;
  clock: Clock;
  /** First parts of every key (default ["ptt"]). */
  prefix?: readonly string[];
  /** Called with the number of sessions that expired (lazily or by the sweeper). */
  onExpired?: (count: number) => void;
}

type Key = readonly (string | number)[];
/** The device's value: its open sessions' deadlines, and until when (real time) it must stay. */
interface Device {
  open: Record<string, number>;
  until: number;
}
/** Gauge changes of a step of this process; `landed`: the last read begun before it landed. */
interface Held {
  open: number;
  bytes: number;
  landed: number;
}
/** New blobs' refs (one per piece for all attempts of a step) and the parts already staged. */
interface Staging {
  refOf: (piece: object) => string;
  staged: Set<string>;
}
interface Write {
  key: Key;
  value?: unknown;
  expireIn?: number;
}

// Deno KV's limits (deno ext/kv config.rs): a value is at most 64 KiB; one atomic write at most
// 1,000 mutations and 800 KiB of keys and values (a set counts its key twice, as Deno does).
const MAX_ATOMIC_BYTES = 800 * 1024;
const MAX_MUTATIONS = 1000;
const MAX_ATTEMPTS = 16;
/** Tombstones a write forgets at most (a lowered max_tombstones_per_device catches up later). */
const MAX_EVICTIONS = 32;
/** expireIn: Deno KV may reclaim a key this long after the engine's keepMs (real time; a net). */
const SAFETY_MS = 60_000;
const COUNTER_SHARDS = 8;
const utf8 = new TextEncoder();

/**
 * The session engine's driver on Deno KV (store-driver.ts). Keys, under `prefix`:
 * - `d,hw`: the device (its open sessions' deadlines); every step's write checks its
 *   versionstamp and rewrites it, so a device's steps are atomic across processes;
 * - `s,hw,sid,i`: the record, JSON in ≤ 60 KiB parts; `t,hw,sid` → dueAt (the due index);
 *   `g,hw,sid` → sealedAt: the device's tombstones (beyond max_tombstones_per_device, its
 *   first sealed are forgotten in the same write);
 * - `b,hw,sid,ref,i`: audio pieces and screenshots, ≤ 60 KiB parts written once; only a
 *   COMMIT reads them (the engine's `payloads`). Parts that do not fit the step's atomic
 *   write (800 KiB, 1,000 mutations) are written just before it, under a ref nothing names
 *   until the step lands; blobs a landed step no longer names are deleted after it;
 * - `n,bucket,shard,open|bytes`: the instance-wide gauges as `sum`s (no read, no conflict;
 *   8 shards by device), by the creation time of the session they count, in buckets of
 *   max_hold_ms: a bucket stops counting once its sessions are all past their hold, so a
 *   session Deno KV reclaimed without a seal (no process swept in time) stops counting too.
 * Every set has an expireIn a minute past the engine's keepMs.
 *
 * Round trips: a step reads the device, the record and the gauges at once, then one atomic
 * write (a COMMIT also reads its blobs). Steps of one device in this process run one after
 * another; processes race, and the loser reads again (bounded, then UNAVAILABLE). A record
 * (text and bookkeeping, blobs aside) over 800 KiB, which the default limits cannot reach,
 * is refused: RESOURCE_EXHAUSTED `deno_kv_atomic_write: ...`, nothing stored.
 */
export function createDenoKvDriver(options: {
  kv: DenoKv;
  clock: Clock;
  maxHoldMs: number;
  prefix?: readonly string[] | undefined;
}): StoreDriver {
  const { kv, clock, maxHoldMs } = options;
  const P = options.prefix ?? ["ptt"];
  const at = (k: DenoKvKey, i: number) => k[P.length + 1 + i];
  const deviceKey = (hw: string): Key => [...P, "d", hw];
  const recordKey = (k: SessionKey, i: number): Key => [...P, "s", k.hardwareId, k.sessionId, i];
  const dueKey = (k: SessionKey): Key => [...P, "t", k.hardwareId, k.sessionId];
  const graveKey = (k: SessionKey): Key => [...P, "g", k.hardwareId, k.sessionId];
  const blobKey = (k: SessionKey, ref: string, i: number): Key => [
    ...[...P, "b", k.hardwareId, k.sessionId],
    ...[ref, i],
  ];
  const bucketMs = Math.max(maxHoldMs, 1000);
  const bucketLive = (bucket: number, now: number) => now < bucket + 2 * bucketMs + maxHoldMs;
  const queues = new Map<string, Promise<unknown>>();
  const running = new Set<Promise<unknown>>();
  // This process's gauge changes that a read may not show yet: held from `run` until every
  // read that started before their write landed is done, and added to those reads (counted
  // twice at worst: a refusal, never a limit passed), so within a process the limits are exact.
  const pending = new Set<Held>();
  const reading = new Set<number>();
  let reads = 0;

  async function list(prefix: Key): Promise<DenoKvEntry[]> {
    const out: DenoKvEntry[] = [];
    for await (const e of kv.list({ prefix })) out.push(e);
    return out;
  }

  /** Runs `fn` after the device's earlier steps in this process. */
  function serial<T>(hw: string, fn: () => Promise<T>): Promise<T> {
    const run = (queues.get(hw) ?? Promise.resolve()).then(fn, fn);
    const tail = run.catch(() => {});
    queues.set(hw, tail);
    void tail.then(() => queues.get(hw) === tail && queues.delete(hw));
    return run;
  }

  /** Cleanups nobody awaits (close() does); one that fails leaves what expireIn reclaims. */
  function background(job: Promise<unknown>): void {
    const p = job.catch(() => {}).finally(() => running.delete(p));
    running.add(p);
  }

  async function readGauges(): Promise<StoreStats & { ended: DenoKvEntry[] }> {
    const now = clock.now();
    const gauges = { openSessions: 0, bufferedBytes: 0, ended: [] as DenoKvEntry[] };
    for (const e of await list([...P, "n"])) {
      const v = (e.value as { value?: unknown } | null)?.value;
      const n = typeof v === "bigint" ? Number(BigInt.asIntN(64, v)) : 0; // sums wrap: signed
      if (!bucketLive(at(e.key, 0) as number, now)) gauges.ended.push(e);
      else if (at(e.key, 2) === "open") gauges.openSessions += n;
      else gauges.bufferedBytes += n;
    }
    return gauges;
  }

  async function readBlobs(key: SessionKey, refs: { ref: string; bytes: number }[]) {
    const parts = new Map<string, Uint8Array[]>(refs.map((r) => [r.ref, []]));
    for (const e of await list([...P, "b", key.hardwareId, key.sessionId])) {
      const into = parts.get(at(e.key, 2) as string);
      if (into && e.value instanceof Uint8Array) into.push(e.value);
    }
    const blobs = new Map<string, Uint8Array>();
    for (const r of refs) {
      const data = concatBytes(parts.get(r.ref) ?? []);
      if (data.length !== r.bytes) {
        throw unavailable(
          `session store: session ${key.sessionId} lost part of its audio or screenshot`,
        );
      }
      blobs.set(r.ref, data);
    }
    return blobs;
  }

  /** Writes in atomic batches that fit Deno KV (blob parts staged, cleanups). */
  async function batches(writes: Write[]): Promise<void> {
    for (let i = 0; i < writes.length; ) {
      let op = kv.atomic();
      for (let bytes = 0, n = 0; i < writes.length && n < MAX_MUTATIONS; i++, n++) {
        const w = writes[i] as Write;
        bytes += size(w);
        if (n > 0 && bytes > MAX_ATOMIC_BYTES) break;
        op = w.expireIn ? op.set(w.key, w.value, { expireIn: w.expireIn }) : op.delete(w.key);
      }
      if (!(await op.commit()).ok) throw new Error("a batch of Deno KV writes failed");
    }
  }

  function blobKeys(key: SessionKey, ref: string, bytes: number): Key[] {
    return Array.from({ length: Math.ceil(bytes / PART_BYTES) }, (_, i) => blobKey(key, ref, i));
  }

  function blobWrites(key: SessionKey, blobs: Blob[], expireIn: number): Write[] {
    return blobs.flatMap(({ ref, data }) =>
      blobKeys(key, ref, data.length).map((k, i) => ({
        key: k,
        value: data.slice(i * PART_BYTES, (i + 1) * PART_BYTES),
        expireIn,
      })),
    );
  }

  /** One read and one checked write: the Step that landed, or undefined on a conflict. */
  async function attempt<A, S extends Step>(
    key: SessionKey,
    run: StepRun<A, S>,
    arg: A,
    payloads: boolean,
    blobs: Staging,
  ): Promise<S | undefined> {
    const read = ++reads;
    reading.add(read);
    const mine: Held = { open: 0, bytes: 0, landed: Number.POSITIVE_INFINITY };
    try {
      const seen = await readStep(key, payloads);
      const { gauges } = seen;
      for (const p of pending) {
        if (p.landed < read) continue; // landed before this read began: the counters have it
        gauges.openSessions += p.open;
        gauges.bufferedBytes += p.bytes;
      }
      const deviceOpen = new Map(Object.entries(seen.dev.open));
      const step = run({ record: seen.handed?.record, deviceOpen, gauges }, key, arg);
      // From `run` on (no await in between), the other steps' runs count this one's changes.
      mine.open = step.write?.openDelta ?? 0;
      mine.bytes = step.write?.bytesDelta ?? 0;
      if (mine.open !== 0 || mine.bytes !== 0) pending.add(mine);
      if (!(await writeStep(key, step.write, seen, blobs))) return undefined;
      mine.landed = reads;
      return step;
    } finally {
      if (mine.landed === Number.POSITIVE_INFINITY) pending.delete(mine);
      reading.delete(read);
      const oldest = Math.min(...reading);
      for (const p of pending) if (p.landed < oldest) pending.delete(p);
    }
  }

  /** The device, the record (a COMMIT's with its blobs) and the gauges, read at once. */
  async function readStep(key: SessionKey, payloads: boolean) {
    const [device, parts, gauges] = await Promise.all([
      kv.get(deviceKey(key.hardwareId)),
      list([...P, "s", key.hardwareId, key.sessionId]),
      readGauges(),
    ]);
    const dev = (device.value as Device | null) ?? { open: {}, until: 0 };
    const stored = decodeParts(parts.map((e) => e.value));
    const meta = stored && unpack(stored);
    // A COMMIT's view has the bytes; the others' pieces are empty (their sizes are in the record).
    const handed =
      stored && payloads && meta?.refs.length
        ? unpack(stored, await readBlobs(key, meta.refs))
        : meta;
    return {
      versionstamp: device.versionstamp,
      dev,
      parts: parts.length,
      stored,
      meta,
      handed,
      gauges,
    };
  }

  /** The step's write, checked against the device read: false when another process wrote it. */
  async function writeStep(
    key: SessionKey,
    w: StepWrite | undefined,
    seen: Awaited<ReturnType<typeof readStep>>,
    staging: Staging,
  ): Promise<boolean> {
    const { dev, stored } = seen;
    let op = kv.atomic().check({ key: deviceKey(key.hardwareId), versionstamp: seen.versionstamp });
    if (!w) {
      // Listed as due, but its record is gone (Deno KV reclaimed it): drop the due entry.
      if (!stored) await op.delete(dueKey(key)).commit();
      return true;
    }
    const now = Date.now();
    const keep = Math.ceil(w.keepMs) + SAFETY_MS;
    const writes: Write[] = [];
    const set = (k: Key, value: unknown, expireIn = keep) => {
      writes.push({ key: k, value, expireIn });
    };
    const del = (k: Key) => {
      writes.push({ key: k });
    };
    const next = w.record && pack(w.record, seen.handed?.known ?? new Map(), staging.refOf);
    const open = { ...dev.open };
    delete open[key.sessionId];
    if (w.record?.state === "open") open[key.sessionId] = w.dueAt;
    const until = Math.max(dev.until, now + keep);
    set(deviceKey(key.hardwareId), { open, until } satisfies Device, until - now);
    const encoded = next ? encodeParts(next.stored) : [];
    for (const [i, part] of encoded.entries()) set(recordKey(key, i), part);
    for (let i = encoded.length; i < seen.parts; i++) del(recordKey(key, i));
    if (next) set(dueKey(key), w.dueAt);
    else del(dueKey(key));
    if (w.record && w.record.state !== "open") {
      set(graveKey(key), w.record.sealedAt);
      // A new tombstone (not one rewritten) counts toward the device's bound.
      if (!stored || stored.state === "open") await forgetFirstSealed(key, w.maxTombstones, del);
    } else if (!w.record) del(graveKey(key));
    // A session's gauges go to the bucket of its creation (see above).
    const session =
      stored?.state === "open" ? stored : w.record?.state === "open" ? w.record : undefined;
    const createdAt = session?.createdAt ?? clock.now();
    if (w.openDelta !== 0 || w.bytesDelta !== 0) {
      const counter = (what: string): Key => [
        ...[...P, "n", createdAt - (createdAt % bucketMs), shardOf(key.hardwareId)],
        what,
      ];
      op = op.sum(counter("open"), BigInt.asUintN(64, BigInt(w.openDelta)));
      op = op.sum(counter("bytes"), BigInt.asUintN(64, BigInt(w.bytesDelta)));
    }
    // Blobs outlive every rewrite of their record: they stay for the whole hold.
    const blobTtl = Math.max(keep, createdAt + maxHoldMs - clock.now() + SAFETY_MS);
    const blobs = blobWrites(key, next?.blobs ?? [], Math.ceil(blobTtl));
    const budget = writes.reduce((n, x) => n + size(x), 0);
    if (budget > MAX_ATOMIC_BYTES || writes.length + 2 > MAX_MUTATIONS) {
      throw resourceExhausted(
        "deno_kv_atomic_write",
        `this change needs ${budget} bytes in ${writes.length + 2} mutations of one Deno KV atomic write; at most ${MAX_ATOMIC_BYTES} bytes and ${MAX_MUTATIONS} mutations are allowed`,
      );
    }
    const inline = budget + blobs.reduce((n, x) => n + size(x), 0) <= MAX_ATOMIC_BYTES;
    if (inline && writes.length + blobs.length + 2 <= MAX_MUTATIONS) writes.push(...blobs);
    else {
      await batches(blobs.filter((b) => !staging.staged.has(JSON.stringify(b.key))));
      for (const b of blobs) staging.staged.add(JSON.stringify(b.key));
    }
    for (const x of writes) {
      op = x.expireIn ? op.set(x.key, x.value, { expireIn: x.expireIn }) : op.delete(x.key);
    }
    if (!(await op.commit()).ok) return false;
    const kept = new Set(next?.refs.map((r) => r.ref));
    const dropped = (seen.meta?.refs ?? []).filter((r) => !kept.has(r.ref));
    const gone = dropped.flatMap((r) => blobKeys(key, r.ref, r.bytes).map((k) => ({ key: k })));
    if (gone.length > 0) background(batches(gone));
    return true;
  }

  /** A new tombstone: the device's first sealed beyond `max` are forgotten in the same write. */
  async function forgetFirstSealed(key: SessionKey, max: number, del: (k: Key) => void) {
    const graves = (await list([...P, "g", key.hardwareId]))
      .map((e) => ({ sessionId: at(e.key, 1) as string, sealedAt: e.value as number }))
      .filter((g) => g.sessionId !== key.sessionId)
      .sort((a, b) => a.sealedAt - b.sealedAt);
    const over = Math.min(graves.length + 1 - max, MAX_EVICTIONS);
    for (const g of graves.slice(0, Math.max(0, over))) {
      const other = { hardwareId: key.hardwareId, sessionId: g.sessionId };
      for (const k of [graveKey(other), recordKey(other, 0), dueKey(other)]) del(k);
    }
  }

  return {
    step(key, run, arg, payloads = false) {
      // The same ref for a piece on every attempt: blobs staged by a failed one are reused.
      const refs = new WeakMap<object, string>();
      const refOf = (piece: object) => {
        const ref = refs.get(piece) ?? crypto.randomUUID();
        refs.set(piece, ref);
        return ref;
      };
      const staging: Staging = { refOf, staged: new Set() };
      return serial(key.hardwareId, async () => {
        for (let tries = 1; tries <= MAX_ATTEMPTS; tries++) {
          try {
            const landed = await attempt(key, run, arg, payloads, staging);
            if (landed) return landed;
          } catch (err) {
            throw err instanceof ConnectError ? err : storeUnavailable(err);
          }
          // Another process wrote the device meanwhile: read again, after a jittered pause.
          await new Promise((r) => setTimeout(r, Math.random() * Math.min(2 ** tries, 50)));
        }
        throw unavailable(
          `session store: device ${key.hardwareId} changed under ${MAX_ATTEMPTS} attempts in a row (contention); retry`,
        );
      });
    },

    async due(now) {
      try {
        const keys: SessionKey[] = [];
        let next = Number.POSITIVE_INFINITY;
        for (const e of await list([...P, "t"])) {
          const key = { hardwareId: at(e.key, 0) as string, sessionId: at(e.key, 1) as string };
          if ((e.value as number) <= now) keys.push(key);
          else next = Math.min(next, e.value as number);
        }
        // Counter buckets that stopped counting go with the sweep.
        const { ended } = await readGauges();
        if (ended.length > 0) await batches(ended.map((e) => ({ key: e.key as Key })));
        return { keys, next };
      } catch (err) {
        throw storeUnavailable(err);
      }
    },

    async gauges() {
      try {
        const { openSessions, bufferedBytes } = await readGauges();
        return { openSessions, bufferedBytes };
      } catch (err) {
        throw storeUnavailable(err);
      }
    },

    async ping() {
      try {
        await kv.get([...P, "ping"]);
      } catch (err) {
        throw storeUnavailable(err);
      }
    },

    async close() {
      await Promise.allSettled([...queues.values()]);
      while (running.size > 0) await Promise.allSettled([...running]);
    },
  };
}

export type { DenoKv } from "./deno-kv-api.js";

/** The session engine over Deno KV (PTT_STORE=deno-kv); the caller closes `kv`. */
export function createDenoKvStore(options: DenoKvStoreOptions): SessionStore {
  const { kv, limits, clock, prefix } = options;
  const driver = createDenoKvDriver({ kv, clock, maxHoldMs: limits.maxHoldMs, prefix });
  // A sweep lists the due index: coalesce the deadlines of a second.
  return createSessionStore({ ...options, driver, sweepSlackMs: 1_000 });
}

function shardOf(hardwareId: string): number {
  let h = 0;
  for (let i = 0; i < hardwareId.length; i++) h = (h * 31 + hardwareId.charCodeAt(i)) | 0;
  return Math.abs(h) % COUNTER_SHARDS;
}

/** Deno KV's count of a write: a set's key twice and its value; a key's tag and terminator per part. */
function size(w: Write): number {
  const key = w.key.reduce<number>(
    (n, p) => n + (typeof p === "number" ? 9 : utf8.encode(p).length + 2),
    1,
  );
  if (!w.expireIn) return key;
  const value = w.value instanceof Uint8Array ? w.value.length : 2 * JSON.stringify(w.value).length;
  return 2 * key + value;
}
