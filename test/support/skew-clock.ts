import type { Clock } from "../../src/core/ports.js";
import { systemClock } from "../../src/core/system-clock.js";

/**
 * Real time plus an adjustable skew: timers still fire on the wall clock (echo
 * pacing, sweeps), but a test can jump `now()` past a TTL without waiting.
 */
export class SkewClock implements Clock {
  private skew = 0;
  now(): number {
    return Date.now() + this.skew;
  }
  advance(ms: number): void {
    this.skew += ms;
  }
  setTimer(fn: () => void, ms: number): unknown {
    return systemClock.setTimer(fn, ms);
  }
  clearTimer(handle: unknown): void {
    systemClock.clearTimer(handle);
  }
}
