import type { Tombstone } from "../session.js";

/**
 * Sealed sessions by key, oldest first, with bounds: ids are the client's to invent,
 * so tombstones are bounded per device (a device that seals too many loses its own
 * oldest, never another device's) and in total (the last resort).
 */
export class TombstoneIndex {
  private readonly all = new Map<string, Tombstone>();
  private readonly byDevice = new Map<string, Set<string>>();

  constructor(
    private readonly perDevice: number,
    private readonly total: number,
  ) {}

  get size(): number {
    return this.all.size;
  }

  get(key: string): Tombstone | undefined {
    return this.all.get(key);
  }

  entries(): IterableIterator<[string, Tombstone]> {
    return this.all.entries();
  }

  /** Adds (or replaces) a tombstone; returns the keys evicted to stay within bounds. */
  add(key: string, tomb: Tombstone): string[] {
    this.delete(key);
    this.all.set(key, tomb);
    let keys = this.byDevice.get(tomb.hardwareId);
    if (!keys) {
      keys = new Set();
      this.byDevice.set(tomb.hardwareId, keys);
    }
    keys.add(key);
    const evicted: string[] = [];
    if (keys.size > this.perDevice) evicted.push(first(keys));
    if (this.all.size - evicted.length > this.total) {
      const oldest = first(this.all.keys());
      if (!evicted.includes(oldest)) evicted.push(oldest);
    }
    for (const k of evicted) this.delete(k);
    return evicted;
  }

  delete(key: string): boolean {
    const tomb = this.all.get(key);
    if (!tomb) return false;
    this.all.delete(key);
    const keys = this.byDevice.get(tomb.hardwareId);
    keys?.delete(key);
    if (keys?.size === 0) this.byDevice.delete(tomb.hardwareId);
    return true;
  }

  clear(): void {
    this.all.clear();
    this.byDevice.clear();
  }
}

function first(keys: Iterable<string>): string {
  for (const k of keys) return k;
  throw new Error("unreachable: empty set");
}
