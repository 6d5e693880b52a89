import type { ConnectError } from "@connectrpc/connect";
import { resourceExhausted } from "../../core/errors.js";
import type { BridgeSocket } from "./socket-port.js";

export interface FlowLimits {
  /** Send-buffer bytes above which calls wait (and reading pauses, where it can). */
  highWaterMark: number;
  /** Running calls at which reading pauses, or new calls are refused where it cannot. */
  maxRunningCalls: number;
  /** Bytes of running calls' frames at which reading pauses, or new calls are refused. */
  maxRunningBytes: number;
  /** Send-buffer bytes past which a client that sends more is closed with 1013. */
  maxBufferedBytes: number;
  /** Poll period of bufferedAmount while calls wait, for bindings without a drain signal. */
  drainPollMs: number;
}

/**
 * Backpressure of one bridge socket, with whatever its runtime offers.
 * - A reply waits while the send buffer is past the high-water mark, and wakes on the binding's
 *   drain signal or, when it has none (Deno), by polling bufferedAmount while anything waits.
 * - A binding that can pause reading (ws, Bun) stops reading while calls, their request bytes or
 *   the send buffer are at their limits: the client's frames wait in TCP.
 * - A binding that cannot (Deno, Workers) gets new calls refused past the call and byte limits
 *   (RESOURCE_EXHAUSTED naming the limit), so a client that sends without reading makes the
 *   server hold at most `maxRunningBytes` of requests, never a queue without bound; one that
 *   goes on while `maxBufferedBytes` of answers wait for it is closed (`overflowing`).
 */
export class FlowControl {
  private calls = 0;
  private bytes = 0;
  private paused = false;
  private closed = false;
  private readonly waiters = new Set<() => void>();
  private poll: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly socket: BridgeSocket,
    private readonly limits: FlowLimits,
  ) {}

  /** The socket takes more now. */
  get canSend(): boolean {
    return this.closed || this.socket.bufferedAmount() <= this.limits.highWaterMark;
  }

  /** More than `maxBufferedBytes` wait to be sent: a client sending now does not read. */
  get overflowing(): boolean {
    return !this.closed && this.socket.bufferedAmount() > this.limits.maxBufferedBytes;
  }

  /**
   * Resolves once the buffer drained to the high-water mark, the socket closed, or `signal`
   * aborted, so that a parked reply never outlives its call or its socket.
   */
  wait(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (this.closed || signal.aborted) return resolve();
      const done = () => {
        signal.removeEventListener("abort", done);
        this.waiters.delete(done);
        resolve();
      };
      signal.addEventListener("abort", done, { once: true });
      this.waiters.add(done);
      this.update();
    });
  }

  /**
   * Why a new call whose frame is `frameBytes` long is refused, if it is. Only bindings that
   * cannot pause reading refuse: the others stopped reading before a limit was passed.
   */
  refusal(frameBytes: number): ConnectError | undefined {
    if (this.socket.pauseReading) return undefined;
    const { maxRunningCalls, maxRunningBytes } = this.limits;
    if (this.calls >= maxRunningCalls) {
      return resourceExhausted(
        "max_running_calls",
        `${this.calls} calls already run on this socket; send more once their CallEnds arrive`,
      );
    }
    if (this.calls > 0 && this.bytes + frameBytes > maxRunningBytes) {
      return resourceExhausted(
        "max_running_bytes",
        `the calls running on this socket hold ${this.bytes} bytes of requests; ${frameBytes} more would pass ${maxRunningBytes}`,
      );
    }
    return undefined;
  }

  /** A call whose frame was `frameBytes` long started running. */
  started(frameBytes: number): void {
    this.calls++;
    this.bytes += frameBytes;
    this.update();
  }

  /** A call whose frame was `frameBytes` long ended. */
  ended(frameBytes: number): void {
    this.calls--;
    this.bytes -= frameBytes;
    this.update();
  }

  /** The binding saw the send buffer drain (or the poll did): wake the waiters if it is low. */
  drained(): void {
    if (!this.canSend) return;
    for (const wake of [...this.waiters]) wake();
    this.update();
  }

  /** The socket closed: every waiter wakes (and finds it closed); polling stops. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const wake of [...this.waiters]) wake();
    this.update();
  }

  /** Pauses or resumes reading, and polls while something waits for the buffer to drain. */
  private update(): void {
    const { highWaterMark, maxRunningCalls, maxRunningBytes } = this.limits;
    const pause =
      !this.closed &&
      (this.calls >= maxRunningCalls ||
        this.bytes >= maxRunningBytes ||
        this.socket.bufferedAmount() > highWaterMark);
    if (pause !== this.paused) {
      this.paused = pause;
      if (pause) this.socket.pauseReading?.();
      else this.socket.resumeReading?.();
    }
    const waiting =
      !this.closed && (this.waiters.size > 0 || (pause && this.socket.pauseReading !== undefined));
    if (!waiting || this.socket.drainSignal) {
      if (this.poll !== undefined) clearInterval(this.poll);
      this.poll = undefined;
    } else if (this.poll === undefined) {
      this.poll = setInterval(() => this.drained(), this.limits.drainPollMs);
    }
  }
}
