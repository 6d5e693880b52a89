import type { Clock, ConversationMemory } from "../ports.js";
import { appendBounded, type MemoryBounds, type MemoryTurn } from "./turns.js";

interface Entry {
  turns: MemoryTurn[];
  touchedAt: number;
}

export interface InProcessMemoryOptions {
  bounds: MemoryBounds;
  clock: Clock;
  /** Devices remembered at once; past it the least recently used device is forgotten. */
  maxDevices?: number;
}

/**
 * Conversation memory in this process (Node, Bun, Deno without KV): lost on restart and not
 * shared between instances. Bounded per device (turns, bytes, idle TTL) and in devices (LRU),
 * so device ids a client invents cannot grow it without limit.
 */
export function createInProcessMemory(options: InProcessMemoryOptions): ConversationMemory {
  const { bounds, clock } = options;
  const maxDevices = options.maxDevices ?? 10_000;
  // A Map iterates in insertion order: re-inserting on use keeps the oldest first.
  const devices = new Map<string, Entry>();
  const live = (hardwareId: string): Entry | undefined => {
    const e = devices.get(hardwareId);
    if (!e) return undefined;
    if (clock.now() - e.touchedAt >= bounds.ttlMs) {
      devices.delete(hardwareId);
      return undefined;
    }
    return e;
  };
  return {
    async recall(hardwareId) {
      return live(hardwareId)?.turns ?? [];
    },
    async remember(hardwareId, turn) {
      if (bounds.maxTurns === 0) return;
      const turns = appendBounded(live(hardwareId)?.turns ?? [], turn, bounds);
      devices.delete(hardwareId);
      devices.set(hardwareId, { turns, touchedAt: clock.now() });
      while (devices.size > maxDevices) {
        const oldest = devices.keys().next().value as string;
        devices.delete(oldest);
      }
    },
    async forget(hardwareId) {
      devices.delete(hardwareId);
    },
  };
}
