import { utf8Length } from "../text-merge.js";

/** One exchange remembered for a device: what the user said, what they heard back. */
export interface MemoryTurn {
  user: string;
  /** Only the reply text that was delivered to the client (written to its connection). */
  assistant: string;
}

export interface MemoryBounds {
  /** Turns kept per device (0: memory off). */
  maxTurns: number;
  /** UTF-8 bytes of user + assistant text kept per device. */
  maxBytes: number;
  /** A device's memory is forgotten after this long without a new turn. */
  ttlMs: number;
}

export const DEFAULT_MEMORY_BOUNDS: MemoryBounds = {
  maxTurns: 8,
  maxBytes: 32 * 1024,
  ttlMs: 60 * 60 * 1000,
};

/**
 * `turns` plus `turn`, oldest dropped first until both bounds hold. Every memory implementation
 * applies this one rule, so a device remembers the same on every runtime and store.
 */
export function appendBounded(
  turns: readonly MemoryTurn[],
  turn: MemoryTurn,
  bounds: MemoryBounds,
): MemoryTurn[] {
  const out = [...turns, turn];
  let bytes = 0;
  for (const t of out) bytes += turnBytes(t);
  while (out.length > 0 && (out.length > bounds.maxTurns || bytes > bounds.maxBytes)) {
    bytes -= turnBytes(out.shift() as MemoryTurn);
  }
  return out;
}

export function turnBytes(t: MemoryTurn): number {
  return utf8Length(t.user) + utf8Length(t.assistant);
}

/** A stored value read back: the turns if it is well-formed, else none (never a crash). */
export function turnsOf(value: unknown): MemoryTurn[] {
  if (!Array.isArray(value)) return [];
  return value.filter(
    (t): t is MemoryTurn =>
      typeof t === "object" &&
      t !== null &&
      typeof (t as MemoryTurn).user === "string" &&
      typeof (t as MemoryTurn).assistant === "string",
  );
}
