import { Buffer } from "node:buffer";
import { RESP_TYPES } from "@redis/client";
import { storeUnavailable, unavailable } from "../../core/errors.js";
import type { Logger, StoreStats } from "../../core/ports.js";
import { bufferedBytes, type SessionKey, type SessionRecord } from "../../core/session.js";
import type { Step, StepRun, StepWrite, StoreDriver } from "../../core/store-driver.js";
import { STEP, WRITE_GLOBAL } from "./redis-lua.js";
import { decodeRecord, encodeRecord, hasPayloads } from "./redis-records.js";
import type { AnyRedisClient } from "./redis-reply-bus.js";

export interface RedisDriverOptions {
  client: AnyRedisClient;
  /** Every key starts with `<prefix>:`. */
  prefix: string;
  logger: Logger;
  /** A step runs on gauges this fresh; older ones are read first (default 100 ms). */
  gaugesMaxAgeMs?: number | undefined;
}

/** A device's steps that lose the version race this often in a row get UNAVAILABLE. */
const MAX_ATTEMPTS = 50;
/** Sessions one sweep takes from the due index. */
const DUE_BATCH = 500;
/** A step runs on gauges this fresh; older ones are read again first (a round trip). */
const GAUGES_MAX_AGE_MS = 100;
/** Devices whose last view this instance keeps, and the bytes of open holds in them. */
const MAX_VIEWS = 10_000;
const MAX_VIEW_BYTES = 64 * 1024 * 1024;
/** A version no device has: a step without a view sends it, and gets the device back. */
const NO_VERSION = "?";

/** A device as of `version`, as this instance last read or wrote it: its next step's view. */
interface DeviceView {
  version: string;
  open: Map<string, number>;
  /** The session it was read or written for, and its record (undefined: none stored). */
  sessionId: string;
  record: SessionRecord | undefined;
  /** Buffered bytes of the record, for MAX_VIEW_BYTES. */
  bytes: number;
  /** Its audio pieces and screenshot carry their bytes (read with them, or written here). */
  complete: boolean;
  /** Its payloads came in its JSON (an earlier version's record): the next write adds them all. */
  inline: boolean;
}

/** A step's gauge changes, counted in the views of other steps until Redis has them. */
interface Delta {
  open: number;
  bytes: number;
  /** The gauges batch that carries it; Infinity until it is sent. */
  batch: number;
}

/** Gauge and due-index changes of the writes that landed since the last batch was sent. */
interface Batch {
  open: number;
  bytes: number;
  keep: number;
  /** member → its new dueAt, or null: out of the index (the last change of a member wins). */
  due: Map<string, number | null>;
  deltas: Delta[];
}

/**
 * The session engine's driver on Redis (store-driver.ts). Key layout, `P` the prefix:
 *
 *   P:{hw}          hash   g, v: the device's version; o:<session>: an open session's deadline
 *   P:{hw}:t        zset   the device's tombstones, by seal order (its oldest forgotten first)
 *   P:{hw}:<sess>   string one session's record (JSON), PX its keepMs
 *   P:{hw}:<sess>:p hash   its payloads (audio pieces by order, "s" the screenshot), PX as the
 *                          record; a write adds only what it brings (redis-records.ts)
 *   P:{#}:gauges    hash   open, bytes: the instance-wide gauges, shared by every instance
 *   P:{#}:due       zset   "hw\nsession" by dueAt: what the sweepers look at
 *
 * A device's keys share the hash tag {hw} (one cluster slot). A step is one script, STEP: it
 * writes only if the device's version is still the one of the step's view, else returns the
 * device as it is (the step runs again on that). The view is what this instance last read or
 * wrote of the device (MAX_VIEWS of them), so the chunks of a hold that reach this instance
 * are one round trip each; a step with no view (a new session here, a device another instance
 * wrote, gauges older than GAUGES_MAX_AGE_MS) is two, as is each conflict.
 *
 * The gauges and the due index are updated by WRITE_GLOBAL after writes land, once per turn of
 * the event loop for all of them, not awaited: it is pipelined on the same connection (this
 * instance's reads send it first, so they see it) and leaves in the turn the steps answered.
 * Its answer (the gauges) is what the next steps run on, plus what the steps in flight here
 * add: exact within one process; across instances, off by what the others admitted in the last
 * GAUGES_MAX_AGE_MS. Every key has a TTL of the longest-kept record in it, so abandoned holds
 * and tombstones leave nothing behind even when no instance is left to sweep.
 *
 * Steps of one device in this process run one after another (no version race among them);
 * instances race, and the loser runs again on what it got back.
 */
export function createRedisDriver(options: RedisDriverOptions): StoreDriver {
  const { client, prefix, logger } = options;
  /** For the reads that return payloads: bulk strings as bytes (audio is binary). */
  const binary = client.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
  const gaugesMaxAge = options.gaugesMaxAgeMs ?? GAUGES_MAX_AGE_MS;
  const gaugesKey = `${prefix}:{#}:gauges`;
  const dueKey = `${prefix}:{#}:due`;
  const queues = new Map<string, Promise<unknown>>();
  const views = new Map<string, DeviceView>();
  let viewBytes = 0;
  const writer = Math.random().toString(36).slice(2, 10);
  let tokens = 0;

  let seen: StoreStats = { openSessions: 0, bufferedBytes: 0 };
  let seenAt = Number.NEGATIVE_INFINITY;
  let seenUpTo = 0;
  let sent = 0;
  const pending = new Set<Delta>();
  let batch: Batch | undefined;

  const deviceKey = (hw: string) => `${prefix}:{${hw}}`;
  const member = (hw: string, sid: string) => `${hw}\n${sid}`;

  /** Runs `fn` after the device's earlier steps in this process. */
  function serial<T>(hw: string, fn: () => Promise<T>): Promise<T> {
    const before = queues.get(hw) ?? Promise.resolve();
    const run = before.then(fn, fn);
    const tail = run.then(
      () => {},
      () => {},
    );
    queues.set(hw, tail);
    void tail.then(() => {
      if (queues.get(hw) === tail) queues.delete(hw);
    });
    return run;
  }

  /** The gauges as Redis answered `upTo` batches ago, unless a later answer came first. */
  function saw(upTo: number, open: unknown, bytes: unknown): void {
    if (upTo < seenUpTo) return;
    seenUpTo = upTo;
    seenAt = performance.now();
    seen = {
      openSessions: Math.max(0, Number(open ?? 0)),
      bufferedBytes: Math.max(0, Number(bytes ?? 0)),
    };
    for (const d of pending) if (d.batch <= upTo) pending.delete(d);
  }

  /** The gauges a step runs on: Redis' last answer plus what this instance has not sent yet. */
  function gaugesNow(): StoreStats {
    let { openSessions, bufferedBytes } = seen;
    for (const d of pending) {
      openSessions += d.open;
      bufferedBytes += d.bytes;
    }
    return { openSessions, bufferedBytes };
  }

  /** Sends the batch (reads of the gauges and of the due index send it first: they see it). */
  function flush(): void {
    const b = batch;
    batch = undefined;
    if (!b) return;
    const no = ++sent;
    for (const d of b.deltas) d.batch = no;
    const adds: string[] = [];
    const drops: string[] = [];
    for (const [m, dueAt] of b.due) {
      if (dueAt === null) drops.push(m);
      else adds.push(m, String(dueAt));
    }
    const args = [String(b.open), String(b.bytes), String(b.keep), String(adds.length / 2)];
    WRITE_GLOBAL.run(client, [gaugesKey, dueKey], args.concat(adds, drops)).then(
      (out) => {
        const [open, bytes] = out as [number, number];
        saw(no, open, bytes);
      },
      (err: unknown) => {
        for (const d of b.deltas) pending.delete(d); // Redis never got them
        logger.warn("redis: gauges and due index not updated", { error: String(err) });
      },
    );
  }

  function toBatch(): Batch {
    if (!batch) {
      batch = { open: 0, bytes: 0, keep: 0, due: new Map(), deltas: [] };
      // Once this turn of the event loop is done: its steps have answered (issuing the command
      // first put ~40 us on every ack's path), and it carries the writes of all of them. It
      // leaves in the same turn as their answers, so another instance reached by a caller
      // after its answer reads it.
      setImmediate(flush);
    }
    return batch;
  }

  async function readGauges(): Promise<StoreStats> {
    flush();
    const upTo = sent;
    const [open, bytes] = await client.hmGet(gaugesKey, ["open", "bytes"]);
    saw(upTo, open, bytes);
    return { ...seen };
  }

  function forgetView(hw: string): void {
    const v = views.get(hw);
    if (!v) return;
    views.delete(hw);
    viewBytes -= v.bytes;
  }

  /** Keeps `v` as the device's latest view (least recently used go first past the bounds). */
  function keepView(hw: string, v: DeviceView): void {
    forgetView(hw);
    views.set(hw, v);
    viewBytes += v.bytes;
    for (const [oldest] of views) {
      if (views.size <= MAX_VIEWS && viewBytes <= MAX_VIEW_BYTES) break;
      forgetView(oldest);
    }
  }

  /**
   * The view in STEP's conflict answer: HGETALL of the device, the record and, when asked
   * for, HGETALL of its payloads (strings, or Buffers from the binary client).
   */
  function viewOf(sid: string, out: unknown[]): DeviceView {
    const fields = out[1] as (string | Buffer)[];
    const raw = out[2] as string | Buffer | null;
    const payloads = out[3] as (string | Buffer)[] | null;
    let g = "";
    let v = "0";
    const open = new Map<string, number>();
    for (let i = 0; i < fields.length; i += 2) {
      const field = String(fields[i]);
      if (field === "g") g = String(fields[i + 1]);
      else if (field === "v") v = String(fields[i + 1]);
      else if (field.startsWith("o:")) open.set(field.slice(2), Number(String(fields[i + 1])));
    }
    const decoded = raw ? decodeRecord(String(raw), payloads ?? undefined) : undefined;
    const record = decoded?.record;
    const inline = decoded?.inline === true;
    const complete = inline || Array.isArray(payloads) || !hasPayloads(record);
    const bytes = sizeOf(record);
    return { version: `${g}.${v}`, open, sessionId: sid, record, bytes, complete, inline };
  }

  function stepArgs(view: DeviceView, write: StepWrite | undefined, dk: string, want: string) {
    const { version, sessionId: sid } = view;
    if (!write) return [version, sid, "none", want];
    const kind = write.record === null ? "del" : write.record.state === "open" ? "open" : "tomb";
    const before = view.inline ? undefined : view.record;
    const stored = write.record ? encodeRecord(write.record, before) : undefined;
    return [
      version,
      sid,
      kind,
      want,
      stored?.json ?? "",
      String(write.dueAt),
      String(keepOf(write)),
      String(write.maxTombstones),
      `${dk}:`,
      `${writer}${(++tokens).toString(36)}`,
      view.record?.state ?? "",
      stored?.hasPayloads ? "1" : "",
      ...(stored?.payloads ?? []),
    ];
  }

  async function runStep<A, S extends Step>(
    key: SessionKey,
    run: StepRun<A, S>,
    arg: A,
    payloads: boolean,
  ): Promise<S> {
    const { hardwareId: hw, sessionId: sid } = key;
    const dk = deviceKey(hw);
    const keys = [dk, `${dk}:t`, `${dk}:${sid}`, `${dk}:${sid}:p`];
    // A COMMIT reads the payloads (store-driver.ts): a view without them is read again.
    const on = payloads ? binary : client;
    const want = payloads ? "1" : "";
    let view = views.get(hw);
    if (view?.sessionId !== sid || (payloads && !view.complete)) view = undefined;
    try {
      if (!view || performance.now() - seenAt > gaugesMaxAge) {
        const [out] = await Promise.all([
          STEP.run(on, keys, [view?.version ?? NO_VERSION, sid, "none", want]),
          readGauges(),
        ]);
        if ((out as unknown[])[0] !== 1) view = viewOf(sid, out as unknown[]);
      }
    } catch (err) {
      forgetView(hw);
      throw storeUnavailable(err);
    }
    for (let tries = 1; tries <= MAX_ATTEMPTS; tries++) {
      const seenView = view as DeviceView;
      const step = run(
        { record: seenView.record, deviceOpen: seenView.open, gauges: gaugesNow() },
        key,
        arg,
      );
      const write = step.write;
      let delta: Delta | undefined;
      if (write && (write.openDelta !== 0 || write.bytesDelta !== 0)) {
        delta = { open: write.openDelta, bytes: write.bytesDelta, batch: Infinity };
        pending.add(delta); // other steps count it from now on (limits exact within a process)
      }
      let out: unknown[];
      try {
        out = (await STEP.run(on, keys, stepArgs(seenView, write, dk, want))) as unknown[];
      } catch (err) {
        if (delta) pending.delete(delta);
        forgetView(hw);
        throw storeUnavailable(err);
      }
      if (out[0] === 1) {
        landed(key, seenView, write, out, delta);
        return step;
      }
      if (delta) pending.delete(delta);
      view = viewOf(sid, out);
      // Another instance wrote the device meanwhile: run again on what came back, after a
      // short random pause once it keeps happening (instances stepping on each other in lockstep).
      if (tries > 2) await new Promise((r) => setTimeout(r, Math.random() * tries));
    }
    forgetView(hw);
    throw unavailable(
      `session store: device ${hw} changed under ${MAX_ATTEMPTS} attempts in a row; retry`,
    );
  }

  /** After STEP answered {1, version, forgotten...}: the new view, and the global changes. */
  function landed(
    key: SessionKey,
    view: DeviceView,
    write: StepWrite | undefined,
    out: unknown[],
    delta: Delta | undefined,
  ): void {
    const { hardwareId: hw, sessionId: sid } = key;
    const m = member(hw, sid);
    if (!write) {
      keepView(hw, view);
      // Listed as due, but its record is gone (its TTL ran out while no instance swept).
      if (!view.record) toBatch().due.set(m, null);
      return;
    }
    const record = write.record ?? undefined;
    if (record?.state === "open") view.open.set(sid, write.dueAt);
    else view.open.delete(sid);
    keepView(hw, {
      version: String(out[1]),
      open: view.open,
      sessionId: sid,
      record,
      bytes: sizeOf(record),
      // New pieces carry their bytes; the others as the view had them.
      complete: view.complete || !hasPayloads(record),
      inline: false,
    });
    const b = toBatch();
    b.open += write.openDelta;
    b.bytes += write.bytesDelta;
    b.keep = Math.max(b.keep, keepOf(write));
    b.due.set(m, record ? write.dueAt : null);
    for (let i = 2; i < out.length; i++) b.due.set(member(hw, String(out[i])), null);
    if (delta) b.deltas.push(delta);
  }

  return {
    step(key, run, arg, payloads = false) {
      return serial(key.hardwareId, () => runStep(key, run, arg, payloads));
    },

    async due(now) {
      flush();
      let dueNow: string[];
      let later: string[];
      try {
        [dueNow, later] = await Promise.all([
          client.zRangeByScore(dueKey, "-inf", now, {
            LIMIT: { offset: 0, count: DUE_BATCH },
          }) as Promise<string[]>,
          client.sendCommand([
            "ZRANGEBYSCORE",
            dueKey,
            `(${now}`,
            "+inf",
            "WITHSCORES",
            "LIMIT",
            "0",
            "1",
          ]) as Promise<string[]>,
        ]);
      } catch (err) {
        throw storeUnavailable(err);
      }
      const keys = dueNow.map((m) => {
        const at = m.indexOf("\n");
        return { hardwareId: m.slice(0, at), sessionId: m.slice(at + 1) };
      });
      // A full batch: come back at once for the rest.
      const next =
        dueNow.length === DUE_BATCH
          ? now
          : later[1] !== undefined
            ? Number(later[1])
            : Number.POSITIVE_INFINITY;
      return { keys, next };
    },

    async gauges() {
      try {
        return await readGauges();
      } catch (err) {
        throw storeUnavailable(err);
      }
    },

    async ping() {
      try {
        await client.ping();
      } catch (err) {
        throw storeUnavailable(err);
      }
    },

    async close() {
      await Promise.allSettled([...queues.values()]);
      flush();
      views.clear();
      viewBytes = 0;
    },
  };
}

function keepOf(write: StepWrite): number {
  return Math.max(1, Math.ceil(write.keepMs));
}

function sizeOf(record: SessionRecord | undefined): number {
  return record?.state === "open" ? bufferedBytes(record) : 0;
}
