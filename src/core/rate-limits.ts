import type { HandlerContext } from "@connectrpc/connect";
import { resourceExhausted } from "./errors.js";
import type { Limits } from "./limits.js";
import type { Clock } from "./ports.js";

/** The trailer a rate-limited call carries: milliseconds until the device may try again. */
export const RETRY_AFTER_TRAILER = "ptt-retry-after-ms";

/** Buckets are swept (full ones forgotten) when the map grows past this, then past twice its size. */
const SWEEP_FLOOR = 4096;

/**
 * Per-device token buckets, one window's worth of calls each: `capacity` calls at once,
 * then one more every windowMs / capacity. A bucket may go below zero (see `charge`): the
 * debt is repaid before the device is served again, so the long-run rate holds exactly.
 */
class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private nextSweep = SWEEP_FLOOR;

  constructor(
    private readonly capacity: number,
    private readonly windowMs: number,
    private readonly clock: Clock,
  ) {}

  /** Milliseconds until `key` has a whole token; 0 when it has one now. */
  wait(key: string): number {
    const tokens = this.tokens(key, this.clock.now());
    return tokens >= 1 ? 0 : Math.ceil(((1 - tokens) * this.windowMs) / this.capacity);
  }

  /** Takes one token, even into debt. */
  charge(key: string): void {
    const now = this.clock.now();
    this.buckets.set(key, { tokens: this.tokens(key, now) - 1, at: now });
    if (this.buckets.size > this.nextSweep) this.sweep(now);
  }

  private tokens(key: string, now: number): number {
    const b = this.buckets.get(key);
    if (!b) return this.capacity;
    const refilled = ((now - b.at) * this.capacity) / this.windowMs;
    return Math.min(this.capacity, b.tokens + Math.max(0, refilled));
  }

  /** Memory stays bounded by the devices active within one window, whatever ids arrive. */
  private sweep(now: number): void {
    for (const [key] of this.buckets) {
      if (this.tokens(key, now) >= this.capacity) this.buckets.delete(key);
    }
    this.nextSweep = Math.max(SWEEP_FLOOR, this.buckets.size * 2);
  }
}

/**
 * Per-device rate limits (issue 11): COLLECTs per second (each one costs a store write),
 * COMMITs per minute (each one runs the workflow: an LLM, TTS). Checked after auth, so a
 * caller without the device's token cannot spend its budget when auth is on. A refusal is
 * RESOURCE_EXHAUSTED naming the limit, with the wait in the `ptt-retry-after-ms` trailer;
 * nothing stored changes.
 */
export class DeviceRateLimits {
  private readonly collects: TokenBuckets;
  private readonly commits: TokenBuckets;

  constructor(
    private readonly limits: Readonly<Limits>,
    clock: Clock,
  ) {
    this.collects = new TokenBuckets(limits.maxCollectsPerSecond, 1000, clock);
    this.commits = new TokenBuckets(limits.maxCommitsPerMinute, 60_000, clock);
  }

  /** A COLLECT (any outcome) spends one token. */
  collect(hardwareId: string, ctx: HandlerContext): void {
    const wait = this.collects.wait(hardwareId);
    if (wait > 0) {
      throw refuse(
        ctx,
        wait,
        "max_collects_per_second",
        this.limits.maxCollectsPerSecond,
        "COLLECTs",
        "1 s",
      );
    }
    this.collects.charge(hardwareId);
  }

  /**
   * Admission of a COMMIT: refused while the device has no token. The token is spent by
   * `committed`, only when the buffer was consumed (the workflow runs): concurrent repeats
   * of one COMMIT still get ALREADY_EXISTS, not this limit.
   */
  admitCommit(hardwareId: string, ctx: HandlerContext): void {
    const wait = this.commits.wait(hardwareId);
    if (wait > 0) {
      throw refuse(
        ctx,
        wait,
        "max_commits_per_minute",
        this.limits.maxCommitsPerMinute,
        "COMMITs",
        "60 s",
      );
    }
  }

  committed(hardwareId: string): void {
    this.commits.charge(hardwareId);
  }
}

function refuse(
  ctx: HandlerContext,
  waitMs: number,
  limit: string,
  max: number,
  what: string,
  window: string,
) {
  ctx.responseTrailer.set(RETRY_AFTER_TRAILER, String(waitMs));
  return resourceExhausted(
    limit,
    `more than ${max} ${what} of this device in ${window}; retry in ${waitMs} ms`,
  );
}
