import type { Clock } from "./ports.js";

/**
 * Wall-clock time and timers. Date.now and setTimeout exist on every runtime we
 * serve (Node, Bun, Deno, workerd), so one implementation covers them all.
 */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(fn, ms) {
    const t = setTimeout(fn, ms);
    // Node: a pending sweep must not keep an otherwise finished process alive.
    (t as { unref?: () => void }).unref?.();
    return t;
  },
  clearTimer(handle) {
    clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
};
