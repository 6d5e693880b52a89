import { appendBounded, type MemoryBounds, turnsOf } from "../../core/memory/turns.js";
import type { Clock, ConversationMemory } from "../../core/ports.js";

/** The synchronous key-value API of SQLite-backed Durable Object storage (ctx.storage.kv). */
export interface SyncKv {
  get<T = unknown>(key: string): T | undefined;
  put(key: string, value: unknown): void;
  delete(key: string): boolean;
}

const KEY = "memory";

/**
 * The device's conversation memory in its Durable Object's storage: it survives hibernation,
 * eviction and restarts, and the object is the device's only writer (no races). One value,
 * bounded by the shared rule; the idle TTL is checked on read.
 */
export function createDurableMemory(
  kv: SyncKv,
  bounds: MemoryBounds,
  clock: Clock,
): ConversationMemory {
  const live = () => {
    const v = kv.get<{ turns?: unknown; touchedAt?: unknown }>(KEY);
    if (!v || typeof v.touchedAt !== "number") return [];
    return clock.now() - v.touchedAt >= bounds.ttlMs ? [] : turnsOf(v.turns);
  };
  return {
    async recall() {
      return live();
    },
    async remember(_hardwareId, turn) {
      if (bounds.maxTurns === 0) return;
      kv.put(KEY, { turns: appendBounded(live(), turn, bounds), touchedAt: clock.now() });
    },
    async forget() {
      kv.delete(KEY);
    },
  };
}
