import type { Clock } from "../../src/core/ports.js";

interface Timer {
  id: number;
  at: number;
  fn: () => void;
}

/**
 * A clock that moves only when told. `advance` moves time without running any
 * timer, so a test sees what a store answers from `now()` alone (no background
 * sweep can race it); `runDueTimers` / `tick` fire the timers that are due, in
 * due order, so timer-driven behaviour is deterministic too.
 */
export class ManualClock implements Clock {
  private time: number;
  private nextId = 0;
  private readonly timers = new Map<number, Timer>();

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  /** Moves time forward; no timer runs. */
  advance(ms: number): void {
    if (ms < 0) throw new Error("ManualClock cannot go back in time");
    this.time += ms;
  }

  /** Runs every timer due by now (including ones that due timers set); returns how many ran. */
  runDueTimers(): number {
    let ran = 0;
    for (;;) {
      let next: Timer | undefined;
      for (const t of this.timers.values()) {
        if (
          t.at <= this.time &&
          (!next || t.at < next.at || (t.at === next.at && t.id < next.id))
        ) {
          next = t;
        }
      }
      if (!next) return ran;
      // A timer that keeps re-arming itself at 0 ms would never let time be "now".
      if (ran >= 10_000) throw new Error("ManualClock: timers keep re-arming without time passing");
      this.timers.delete(next.id);
      next.fn();
      ran++;
    }
  }

  /** Moves time forward and runs the timers that became due. */
  tick(ms: number): number {
    this.advance(ms);
    return this.runDueTimers();
  }

  /**
   * `tick` for timers that start async work (a store's sweep): after running the due
   * timers it lets that work finish (one macrotask), and runs again what became due,
   * until a pass runs none.
   */
  async tickAsync(ms: number): Promise<number> {
    this.advance(ms);
    let ran = 0;
    for (;;) {
      const n = this.runDueTimers();
      await new Promise((resolve) => setTimeout(resolve, 0));
      ran += n;
      if (n === 0) return ran;
    }
  }

  /** Timers set and neither run nor cleared. */
  get pendingTimers(): number {
    return this.timers.size;
  }

  setTimer(fn: () => void, ms: number): unknown {
    const id = ++this.nextId;
    this.timers.set(id, { id, at: this.time + Math.max(0, ms), fn });
    return id;
  }

  clearTimer(handle: unknown): void {
    if (typeof handle === "number") this.timers.delete(handle);
  }
}
