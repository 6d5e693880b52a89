/** What Liveness needs from the channel, about its current socket. */
export interface LivenessPort {
  /** A call runs on the socket (a reply streams, an ack is awaited). */
  running(): boolean;
  /** Bytes handed to the socket that have left its send buffer (sent − bufferedAmount). */
  departed(): number;
  /** Sends a Ping (ClientFrame call_id 0); returns its size in bytes. */
  ping(): number;
  /** No frame arrived in time: the socket is taken for dead. */
  dead(why: string): void;
}

export interface LivenessTimings {
  /** Quiet time, while a call runs, after which the socket is probed. `Infinity`: never. */
  intervalMs: number;
  /** Time after the probe within which some frame must arrive. */
  timeoutMs: number;
}

const now = () => performance.now();

/**
 * Notices a bridge socket that died silently (no FIN, no RST: a laptop lid, a phone leaving
 * Wi-Fi), which a browser never reports: JavaScript sees no WebSocket pings and no close event
 * comes. While a call runs and no frame arrived for `intervalMs`, it asks for one (a Ping); if
 * none arrives within `timeoutMs`, the socket is dead. Any frame counts, so a server older than
 * Ping (it answers with a CallEnd on call_id 0) proves the socket alive just as well.
 *
 * An idle socket is never probed: it costs nothing and is probed at once by the next call (quiet
 * for longer than `intervalMs` already). Frames only stamp a time; the one timer is re-armed when
 * it fires, never per frame.
 */
export class Liveness {
  private heardAt = now();
  /** When the unanswered Ping was sent. */
  private pingAt: number | undefined;
  /** `departed()` when last looked at: it grows while our own upload makes progress. */
  private departedAt = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  /** The timeout passed and one more turn of the event loop was given before the verdict. */
  private lastLook = false;

  constructor(
    private readonly port: LivenessPort,
    private readonly timings: LivenessTimings,
  ) {}

  /** A frame arrived. */
  heard(): void {
    this.heardAt = now();
  }

  /** A call was sent: watch the socket while calls run. */
  callStarted(): void {
    if (this.stopped || this.timer !== undefined || !Number.isFinite(this.timings.intervalMs)) {
      return;
    }
    this.check();
  }

  /** The socket is gone: no more probes or verdicts. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private check(): void {
    this.timer = undefined;
    if (this.stopped) return;
    if (!this.port.running()) {
      // Idle: nothing to watch until the next call.
      this.pingAt = undefined;
      return;
    }
    const t = now();
    if (this.pingAt !== undefined && this.heardAt < this.pingAt) {
      const departed = this.port.departed();
      if (departed > this.departedAt) {
        // Our own frames are still leaving (a big audio chunk on a slow uplink): the Ping waits
        // behind them and the line is alive, so the wait starts again.
        this.departedAt = departed;
        this.pingAt = t;
        this.lastLook = false;
        this.arm(this.timings.timeoutMs);
        return;
      }
      const waited = t - this.pingAt;
      if (waited >= this.timings.timeoutMs) {
        if (!this.lastLook) {
          // A process that was busy or asleep runs its overdue timers before it reads what
          // arrived meanwhile: one more turn, so that a frame already here is seen first.
          this.lastLook = true;
          this.arm(0);
          return;
        }
        const quiet = Math.round(t - this.heardAt);
        this.port.dead(
          `no frame from the server for ${quiet} ms, none within ${this.timings.timeoutMs} ms of a ping`,
        );
        return;
      }
      this.arm(this.timings.timeoutMs - waited);
      return;
    }
    this.pingAt = undefined;
    const due = this.heardAt + this.timings.intervalMs - t;
    if (due > 0) {
      this.arm(due);
      return;
    }
    this.pingAt = t;
    this.lastLook = false;
    // The Ping's own bytes leaving later are no sign of life.
    const before = this.port.departed();
    this.departedAt = before + this.port.ping();
    this.arm(this.timings.timeoutMs);
  }

  private arm(ms: number): void {
    this.timer = setTimeout(() => this.check(), ms);
  }
}
