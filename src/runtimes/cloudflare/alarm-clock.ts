import type { Clock } from "../../core/ports.js";

interface Timer {
  fn: () => void;
  at: number;
}

/**
 * The store's one timer as the Durable Object's one alarm, so expiry happens even
 * after the object was evicted: the alarm wakes it, the constructor reloads the
 * journal (re-arming for the earliest deadline), and alarm() runs the sweep.
 * An object has one alarm, so the alarm is set for the earliest of the store's timer
 * (setTimer: give it to the store only; a reply's pauses use ordinary timers) and the
 * named deadlines of other owners (wakeAt: the reply journals' expiry).
 */
export class AlarmClock implements Clock {
  private pending: Timer | undefined;
  private readonly others = new Map<string, Timer>();
  private armedAt: number | undefined;

  /** `onError` hears of an alarm that storage failed to set or delete. */
  constructor(
    private readonly storage: Pick<DurableObjectStorage, "setAlarm" | "deleteAlarm">,
    private readonly onError: (what: "setAlarm" | "deleteAlarm", err: unknown) => void = () => {},
  ) {}

  now(): number {
    return Date.now();
  }

  setTimer(fn: () => void, ms: number): unknown {
    const timer = { fn, at: Date.now() + ms };
    this.pending = timer;
    this.arm();
    return timer;
  }

  clearTimer(handle: unknown): void {
    if (handle !== this.pending) return;
    this.pending = undefined;
    this.arm();
  }

  /** `owner`'s one deadline (replacing its earlier one); undefined clears it. */
  wakeAt(owner: string, at: number | undefined, fn: () => void): void {
    if (at === undefined) this.others.delete(owner);
    else this.others.set(owner, { fn, at });
    this.arm();
  }

  /**
   * alarm(): runs every timer (each owner's callback sweeps what is due and sets its next
   * deadline; a forced early alarm changes nothing); false when the store set no timer in
   * this life of the object (the caller sweeps the store).
   */
  fire(): boolean {
    const store = this.pending;
    const others = [...this.others.values()];
    this.pending = undefined;
    this.others.clear();
    this.armedAt = undefined;
    for (const t of others) t.fn();
    store?.fn();
    this.arm();
    return store !== undefined;
  }

  /** The alarm at the earliest deadline; unchanged when it already is (the output gate waits). */
  private arm(): void {
    let at = this.pending?.at;
    for (const t of this.others.values()) at = at === undefined ? t.at : Math.min(at, t.at);
    if (at === this.armedAt) return;
    this.armedAt = at;
    // The output gate holds responses until the alarm is durably set.
    if (at === undefined) {
      this.storage.deleteAlarm().catch((err: unknown) => this.onError("deleteAlarm", err));
    } else {
      this.storage.setAlarm(at).catch((err: unknown) => this.onError("setAlarm", err));
    }
  }
}
