import type { Clock } from "../../core/ports.js";

/**
 * The store's one timer as the Durable Object's one alarm, so expiry happens even
 * after the object was evicted: the alarm wakes it, the constructor reloads the
 * journal (re-arming for the earliest deadline), and alarm() runs the sweep.
 * An object has one alarm, so this clock holds one timer: give it to the store only
 * (anything else, such as a reply's pauses, uses ordinary timers).
 */
export class AlarmClock implements Clock {
  private pending: (() => void) | undefined;

  /** `onError` hears of an alarm that storage failed to set or delete. */
  constructor(
    private readonly storage: Pick<DurableObjectStorage, "setAlarm" | "deleteAlarm">,
    private readonly onError: (what: "setAlarm" | "deleteAlarm", err: unknown) => void = () => {},
  ) {}

  now(): number {
    return Date.now();
  }

  setTimer(fn: () => void, ms: number): unknown {
    this.pending = fn;
    // The output gate holds responses until the alarm is durably set.
    this.storage.setAlarm(Date.now() + ms).catch((err: unknown) => this.onError("setAlarm", err));
    return fn;
  }

  clearTimer(handle: unknown): void {
    if (handle !== this.pending) return;
    this.pending = undefined;
    this.storage.deleteAlarm().catch((err: unknown) => this.onError("deleteAlarm", err));
  }

  /** alarm(): runs the store's timer callback; false when none was set in this life of the object. */
  fire(): boolean {
    const fn = this.pending;
    this.pending = undefined;
    fn?.();
    return fn !== undefined;
  }
}
