import { storeUnavailable, unavailable } from "../../core/errors.js";
import type { Logger, StoreStats } from "../../core/ports.js";
import type { SessionKey } from "../../core/session.js";
import type { Step, StepRun, StoreDriver } from "../../core/store-driver.js";
import { READ_STEP, WRITE_GLOBAL, WRITE_STEP } from "./redis-lua.js";
import { decodeRecord, encodeRecord } from "./redis-records.js";
import type { AnyRedisClient } from "./redis-reply-bus.js";

export interface RedisDriverOptions {
  client: AnyRedisClient;
  /** Every key starts with `<prefix>:`. */
  prefix: string;
  logger: Logger;
}

/** A device's steps that lose the version race this often in a row get UNAVAILABLE. */
const MAX_ATTEMPTS = 50;
/** Sessions one sweep takes from the due index. */
const DUE_BATCH = 500;

/**
 * The session engine's driver on Redis (store-driver.ts). Key layout, `P` the prefix:
 *
 *   P:{hw}          hash   v: the device's version; o:<session>: an open session's deadline
 *   P:{hw}:t        zset   the device's tombstones, by seal order (its oldest forgotten first)
 *   P:{hw}:<sess>   string one session's record (JSON), PX its keepMs
 *   P:{#}:gauges    hash   open, bytes: the instance-wide gauges, shared by every instance
 *   P:{#}:due       zset   "hw\nsession" by dueAt: what the sweepers look at
 *
 * A device's keys share the hash tag {hw} (one cluster slot), so a step is two round trips:
 * READ_STEP (hash + record, atomically), then WRITE_STEP, which writes only if the version is
 * still the one read and bumps it (otherwise the step reads again). The gauges and the due
 * index are updated by WRITE_GLOBAL right after a write lands, not awaited: it is pipelined on
 * the same connection, so this instance's next read sees it, and a step costs no third round
 * trip. Every key has a TTL of the longest-kept record in it, so abandoned holds and tombstones
 * leave nothing behind even when no instance is left to sweep.
 *
 * Steps of one device in this process run one after another (no version race among them);
 * instances race, and the loser reads again.
 */
export function createRedisDriver(options: RedisDriverOptions): StoreDriver {
  const { client, prefix, logger } = options;
  const gaugesKey = `${prefix}:{#}:gauges`;
  const dueKey = `${prefix}:{#}:due`;
  const queues = new Map<string, Promise<unknown>>();

  const deviceKey = (hw: string) => `${prefix}:{${hw}}`;
  const member = (key: SessionKey) => `${key.hardwareId}\n${key.sessionId}`;

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

  function global(args: string[]): void {
    WRITE_GLOBAL.run(client, [gaugesKey, dueKey], args).catch((err: unknown) => {
      logger.warn("redis: gauges and due index not updated", { error: String(err) });
    });
  }

  async function readGauges(): Promise<StoreStats> {
    const [open, bytes] = await client.hmGet(gaugesKey, ["open", "bytes"]);
    return {
      openSessions: Math.max(0, Number(open ?? 0)),
      bufferedBytes: Math.max(0, Number(bytes ?? 0)),
    };
  }

  /** One read, one conditional write: the Step that landed, or undefined on a conflict. */
  async function attempt<A, S extends Step>(
    key: SessionKey,
    run: StepRun<A, S>,
    arg: A,
  ): Promise<S | undefined> {
    const dk = deviceKey(key.hardwareId);
    const keys = [dk, `${dk}:t`, `${dk}:${key.sessionId}`];
    let read: unknown;
    let gauges: StoreStats;
    try {
      [read, gauges] = await Promise.all([READ_STEP.run(client, keys, []), readGauges()]);
    } catch (err) {
      throw storeUnavailable(err);
    }
    const [fields, raw] = read as [string[], string | null];
    let version = "0";
    const deviceOpen = new Map<string, number>();
    for (let i = 0; i < fields.length; i += 2) {
      const field = fields[i] as string;
      if (field === "v") version = fields[i + 1] as string;
      else if (field.startsWith("o:")) deviceOpen.set(field.slice(2), Number(fields[i + 1]));
    }
    const record = raw ? decodeRecord(raw) : undefined;
    const step = run({ record, deviceOpen, gauges }, key, arg);
    const write = step.write;
    if (!write) {
      // Listed as due, but its record is gone (its TTL ran out while no instance swept).
      if (!record) global(["0", "0", "0", "", "0", member(key)]);
      return step;
    }
    const kind = write.record === null ? "del" : write.record.state === "open" ? "open" : "tomb";
    let out: unknown;
    try {
      out = await WRITE_STEP.run(client, keys, [
        version,
        key.sessionId,
        kind,
        write.record ? encodeRecord(write.record) : "",
        String(write.dueAt),
        String(Math.max(1, Math.ceil(write.keepMs))),
        String(write.maxTombstones),
        `${dk}:`,
      ]);
    } catch (err) {
      throw storeUnavailable(err);
    }
    const [landed, ...forgotten] = out as [number, ...string[]];
    if (landed !== 1) return undefined;
    global([
      String(write.openDelta),
      String(write.bytesDelta),
      String(Math.max(1, Math.ceil(write.keepMs))),
      write.record ? member(key) : "",
      String(write.dueAt),
      ...(write.record ? [] : [member(key)]),
      ...forgotten.map((sid) => `${key.hardwareId}\n${sid}`),
    ]);
    return step;
  }

  return {
    step(key, run, arg) {
      return serial(key.hardwareId, async () => {
        for (let tries = 1; tries <= MAX_ATTEMPTS; tries++) {
          const landed = await attempt(key, run, arg);
          if (landed) return landed;
          // Another instance wrote the device meanwhile: read again, after a short random
          // pause once it keeps happening (instances stepping on each other in lockstep).
          if (tries > 2) await new Promise((r) => setTimeout(r, Math.random() * tries));
        }
        throw unavailable(
          `session store: device ${key.hardwareId} changed under ${MAX_ATTEMPTS} attempts in a row; retry`,
        );
      });
    },

    async due(now) {
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
    },
  };
}
