import type { Clock, ConversationMemory } from "../ports.js";
import { appendBounded, type MemoryBounds, type MemoryTurn, turnsOf } from "./turns.js";

// The part of Deno KV used here (Deno.openKv() on Deno, @deno/kv's openKv() on Node), declared
// so core imports neither; the session store's own declaration may change without touching this.
type Key = readonly (string | number)[];
export interface MemoryKv {
  get(key: Key): Promise<{ value: unknown; versionstamp: string | null }>;
  atomic(): MemoryKvAtomic;
}
interface MemoryKvAtomic {
  check(...checks: { key: Key; versionstamp: string | null }[]): MemoryKvAtomic;
  set(key: Key, value: unknown, options?: { expireIn?: number }): MemoryKvAtomic;
  delete(key: Key): MemoryKvAtomic;
  commit(): Promise<{ ok: boolean }>;
}

export interface DenoKvMemoryOptions {
  kv: MemoryKv;
  bounds: MemoryBounds;
  clock: Clock;
  /** First parts of the keys (default ["ptt", "memory"]). */
  prefix?: readonly string[];
}

/**
 * A Deno KV value is at most 64 KiB and strings may be stored as UTF-16 (2 bytes a unit, at
 * most 2 per UTF-8 byte): 30 KiB of UTF-8 always fits.
 */
const MAX_KV_BYTES = 30 * 1024;
const MAX_ATTEMPTS = 8;

interface Stored {
  turns: MemoryTurn[];
  touchedAt: number;
}

/**
 * Conversation memory in Deno KV (PTT_STORE=deno-kv): one value per device, so it survives
 * restarts and follows the device to every process sharing the database. remember() is a
 * check-and-set, retried on conflict, so two instances never lose each other's turn. expireIn
 * lets Deno KV reclaim an idle device's memory; recall() also checks the TTL itself.
 */
export function createDenoKvMemory(options: DenoKvMemoryOptions): ConversationMemory {
  const { kv, clock } = options;
  const bounds = { ...options.bounds, maxBytes: Math.min(options.bounds.maxBytes, MAX_KV_BYTES) };
  const prefix = options.prefix ?? ["ptt", "memory"];
  const keyOf = (hardwareId: string): Key => [...prefix, hardwareId];
  const live = (value: unknown): MemoryTurn[] => {
    const v = value as Partial<Stored> | null;
    if (!v || typeof v.touchedAt !== "number") return [];
    return clock.now() - v.touchedAt >= bounds.ttlMs ? [] : turnsOf(v.turns);
  };
  return {
    async recall(hardwareId) {
      return live((await kv.get(keyOf(hardwareId))).value);
    },
    async remember(hardwareId, turn) {
      if (bounds.maxTurns === 0) return;
      const key = keyOf(hardwareId);
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        const entry = await kv.get(key);
        const stored: Stored = {
          turns: appendBounded(live(entry.value), turn, bounds),
          touchedAt: clock.now(),
        };
        const res = await kv
          .atomic()
          .check({ key, versionstamp: entry.versionstamp })
          .set(key, stored, { expireIn: bounds.ttlMs })
          .commit();
        if (res.ok) return;
      }
      throw new Error(`memory of ${hardwareId} kept changing under ${MAX_ATTEMPTS} writes`);
    },
    async forget(hardwareId) {
      await kv.atomic().delete(keyOf(hardwareId)).commit();
    },
  };
}
