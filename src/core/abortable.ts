/**
 * Iterates `source` but stops as soon as `signal` aborts, even while the source is
 * stuck in a slow step that ignores its signal: an interrupt must end the reply
 * at once, not when the workflow next looks at its signal.
 */
export async function* untilAborted<T>(
  source: AsyncIterable<T>,
  signal: AbortSignal,
): AsyncGenerator<T> {
  const it = source[Symbol.asyncIterator]();
  let onAbort = () => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
  });
  // The race below handles this rejection; this keeps it from counting as unhandled when unraced.
  aborted.catch(() => {});
  signal.addEventListener("abort", onAbort, { once: true });
  let finished = false;
  try {
    for (;;) {
      signal.throwIfAborted();
      const step = await Promise.race([it.next(), aborted]);
      if (step.done) {
        finished = true;
        return;
      }
      yield step.value;
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
    // Let the source clean up, without waiting on a source that ignores its signal.
    if (!finished) it.return?.().catch(() => {});
  }
}

/**
 * A signal that aborts when `a` or `b` does, with the first one's reason: AbortSignal.any for
 * two signals, without its weak references (on Node 20 it cost ~14 µs a call, more than
 * everything else a COMMIT does before its first frame). `unlink` drops the listeners.
 */
export function linkSignals(
  a: AbortSignal,
  b: AbortSignal,
): { signal: AbortSignal; unlink(): void } {
  if (a.aborted) return { signal: a, unlink() {} };
  if (b.aborted) return { signal: b, unlink() {} };
  const controller = new AbortController();
  const onAbort = (ev: Event) => {
    unlink();
    controller.abort((ev.target as AbortSignal).reason);
  };
  const unlink = () => {
    a.removeEventListener("abort", onAbort);
    b.removeEventListener("abort", onAbort);
  };
  a.addEventListener("abort", onAbort);
  b.addEventListener("abort", onAbort);
  return { signal: controller.signal, unlink };
}

function noop() {}

/**
 * Stops waiting, once, with the first reason given: `race(p)` is `p` until then, and rejects
 * with the reason from then on. A call's wait for reply frames, ended by the call's own abort
 * or by a resume taking the reply over: one promise for the call, not a listener, a promise
 * and an AbortController per frame (raceSignal over a linkSignals).
 */
export class Stopper {
  private stopped = false;
  private reason: unknown;
  private reject: (reason: unknown) => void = noop;
  private readonly whenStopped = new Promise<never>((_, reject) => {
    this.reject = reject;
  });

  constructor() {
    // race() hands the rejection on; unraced, it must not count as unhandled.
    this.whenStopped.catch(noop);
  }

  readonly stop = (reason: unknown): void => {
    if (this.stopped) return;
    this.stopped = true;
    this.reason = reason;
    this.reject(reason);
  };

  race<T>(promise: Promise<T>): Promise<T> {
    if (this.stopped) return Promise.reject(this.reason);
    return Promise.race([promise, this.whenStopped]);
  }
}
