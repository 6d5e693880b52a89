import {
  appendBounded,
  type MemoryBounds,
  type MemoryTurn,
  turnsOf,
} from "../../core/memory/turns.js";
import type { Clock, ConversationMemory } from "../../core/ports.js";
import type { AnyRedisClient } from "./redis-reply-bus.js";
import { RedisScript } from "./redis-script.js";

export interface RedisMemoryOptions {
  client: AnyRedisClient;
  /** Keys are `<prefix>:{<hardware id>}:memory`: beside the device's sessions, same slot. */
  prefix: string;
  bounds: MemoryBounds;
  clock: Clock;
}

interface Stored {
  turns: MemoryTurn[];
  touchedAt: number;
}

const MAX_ATTEMPTS = 8;

/** Sets the value only if it is still the one read (false: it is absent). */
const COMPARE_AND_SET = new RedisScript(
  "memory-cas",
  `local now = redis.call('GET', KEYS[1])
if (now or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1`,
);

/**
 * Conversation memory in Redis (PTT_STORE=redis://…): one JSON value per device with a TTL of
 * the memory's idle bound, so a device's memory follows it to every instance and an idle one
 * leaves no key. remember() is a compare-and-set retried on conflict (the bounding rule is
 * core's, in TypeScript), so two instances never lose each other's turn.
 */
export function createRedisMemory(options: RedisMemoryOptions): ConversationMemory {
  const { client, bounds, clock } = options;
  const keyOf = (hardwareId: string) => `${options.prefix}:{${hardwareId}}:memory`;
  const live = (raw: string | null): MemoryTurn[] => {
    if (!raw) return [];
    try {
      const v = JSON.parse(raw) as Partial<Stored>;
      if (typeof v.touchedAt !== "number" || clock.now() - v.touchedAt >= bounds.ttlMs) return [];
      return turnsOf(v.turns);
    } catch {
      return [];
    }
  };
  return {
    async recall(hardwareId) {
      return live((await client.get(keyOf(hardwareId))) as string | null);
    },
    async remember(hardwareId, turn) {
      if (bounds.maxTurns === 0) return;
      const key = keyOf(hardwareId);
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        const raw = (await client.get(key)) as string | null;
        const stored: Stored = {
          turns: appendBounded(live(raw), turn, bounds),
          touchedAt: clock.now(),
        };
        const args = [raw ?? "", JSON.stringify(stored), String(Math.max(1, bounds.ttlMs))];
        if ((await COMPARE_AND_SET.run(client, [key], args)) === 1) return;
      }
      throw new Error(`memory of ${hardwareId} kept changing under ${MAX_ATTEMPTS} writes`);
    },
    async forget(hardwareId) {
      await client.del(keyOf(hardwareId));
    },
  };
}
