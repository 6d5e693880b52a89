import { toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { type StreamResponse, StreamResponseSchema } from "../gen/streaming_pb.js";
import { linkSignals, untilAborted } from "./abortable.js";
import { asCallError } from "./call-errors.js";
import { resourceExhausted } from "./errors.js";
import { LIMIT_NAMES } from "./limits.js";
import type { JournalEnd, ReplyContext, ReplyPart } from "./ports.js";
import type { PttCore } from "./ptt-core.js";
import { replyFrame } from "./reply-frames.js";
import type { RunningReply } from "./reply-registry.js";
import type { CommittedTurn, SessionKey } from "./session.js";

/** One pull of a reply: its next frame (numbered from 0), or how it ended (undefined: OK). */
export type ReplyStep =
  | { frame: StreamResponse; index: number }
  | { end: ConnectError | undefined };

/**
 * One running reply, apart from the call that started it (docs/protocol.md §9): the workflow's
 * parts become numbered frames, each journaled before the call writes it, so a client that
 * lost its connection can resume from any frame it has. While the call is attached it pulls
 * the frames (its writes pace the workflow, as before); when the caller hangs up the run
 * drains the workflow into the journal by itself, until the reply ends or journaling stops at
 * max_journal_bytes. With a resume window of 0 the hang-up stops the workflow instead.
 *
 * It is also the workflow's ReplyContext: delivered() is the text of the frames some call
 * wrote (the original or a resume), and the end hooks run once delivery is final: a call
 * delivered the ending, nobody can resume any more (the window passed), or the device's next
 * COMMIT needs the memory settled.
 */
export class ReplyRun implements ReplyContext {
  readonly key: SessionKey;
  readonly turnId: string;
  private readonly source: AsyncIterator<ReplyPart>;
  private readonly signal: AbortSignal;
  private readonly unlink: () => void;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly texts: string[] = [];
  private produced = 0;
  private journaled = 0;
  private journaling: boolean;
  private ended: { end: ConnectError | undefined } | undefined;
  private watermark = 0;
  private hooks: (() => void | Promise<void>)[] = [];
  private settling: Promise<void> | undefined;
  private settleTimer: unknown;
  /** The attached call's stop: a resume taking the reply over calls it. */
  private takeOver: ((reason: unknown) => void) | undefined;
  private slotHeld = true;

  constructor(
    private readonly core: PttCore,
    private readonly reply: RunningReply,
    turn: CommittedTurn,
    /** The call's signal, read only without a resume window (a hang-up stops the workflow). */
    callSignal: () => AbortSignal,
    private headers: Headers | undefined,
    /** Gives the reply slot back; called once, the moment the workflow stops. */
    private readonly releaseSlot: () => void,
  ) {
    this.key = { hardwareId: reply.hardwareId, sessionId: reply.sessionId };
    this.turnId = turn.turnId;
    this.journaling = core.resumeWindowMs > 0;
    // Without a window a hang-up stops the workflow (nothing could resume it); with one, only
    // a stop (interrupt, CANCEL, barge-in, shutdown) does.
    const linked = this.journaling
      ? { signal: reply.controller.signal, unlink() {} }
      : linkSignals(callSignal(), reply.controller.signal);
    this.signal = linked.signal;
    this.unlink = linked.unlink;
    this.signal.addEventListener("abort", this.release, { once: true });
    this.source = untilAborted(core.workflow(turn, this.signal, this), this.signal)[
      Symbol.asyncIterator
    ]();
  }

  /** Opens the journal (before the first frame): false when it could not be. */
  async open(): Promise<void> {
    if (!this.journaling) return;
    try {
      await this.core.journal.open(this.key, this.turnId, this.ttl);
    } catch (err) {
      this.journalFailed(err);
    }
  }

  /** The next frame or the end; pulls are taken one at a time, in order. */
  next(): Promise<ReplyStep> {
    const step = this.chain.then(() => this.pull());
    this.chain = step.catch(() => {});
    return step;
  }

  /** The attached call: `stop` is called when a resume takes the reply over from it. */
  attach(stop: (reason: unknown) => void): void {
    this.takeOver = stop;
  }

  /** A resume on this instance: the call still attached (a connection that died) lets go. */
  takeOverFromCall(): void {
    this.takeOver?.(new ConnectError("the reply was resumed by another call", Code.Canceled));
  }

  /** Frames 0…n-1 were written to some client. */
  markDelivered(n: number): void {
    if (n > this.watermark) this.watermark = n;
  }

  /**
   * The call hung up (or was taken over) before the ending: the run goes on alone into the
   * journal, and settles when the window passes unless a resume delivers the ending first.
   */
  detach(): void {
    this.takeOver = undefined;
    this.detached = true;
    void this.drain();
  }

  /** No call is reading it: the caller hung up and no resume is attached. */
  detached = false;

  /** Runs the end hooks once: delivered() is final. */
  settle(): Promise<void> {
    this.settling ??= this.runHooks();
    return this.settling;
  }

  get isSettled(): boolean {
    return this.settling !== undefined;
  }

  // ReplyContext
  delivered(): string {
    return this.texts.slice(0, this.watermark).join("");
  }

  onEnd(fn: () => void | Promise<void>): void {
    this.hooks.push(fn);
  }

  header(name: string, value: string): void {
    this.headers?.set(name, value);
  }

  private get ttl(): number {
    return this.core.resumeWindowMs;
  }

  private readonly release = () => {
    if (!this.slotHeld) return;
    this.slotHeld = false;
    this.signal.removeEventListener("abort", this.release);
    this.unlink();
    this.releaseSlot();
  };

  private async drain(): Promise<void> {
    for (;;) {
      const step = await this.next();
      if ("end" in step) break;
      if (!this.journaling && !this.signal.aborted) {
        // Nobody can ever read the frames from here on: stop the workflow.
        this.reply.controller.abort(this.journalStop ?? new ConnectError("reply not journaled"));
      }
    }
    if (this.core.resumeWindowMs === 0) {
      await this.settle();
      return;
    }
    this.settleTimer = this.core.clock.setTimer(() => void this.settle(), this.ttl);
  }

  private journalStop: ConnectError | undefined;

  private async pull(): Promise<ReplyStep> {
    for (;;) {
      if (this.ended) return this.ended;
      let step: IteratorResult<ReplyPart>;
      try {
        step = await this.source.next();
      } catch (err) {
        return this.finish(asCallError(err));
      }
      if (step.done) return this.finish(undefined);
      const part = step.value;
      const frame = replyFrame(part, this.key.sessionId);
      if (!frame) continue;
      const index = this.produced++;
      this.texts.push(part.kind === "text" ? part.text : "");
      if (this.journaling) await this.journalFrame(index, frame);
      return { frame, index };
    }
  }

  private async journalFrame(index: number, frame: StreamResponse): Promise<void> {
    const bytes = toBinary(StreamResponseSchema, frame);
    if (this.journaled + bytes.length > this.core.limits.maxJournalBytes) {
      // Never trimmed silently: a resume that reaches this frame is told why it cannot go on.
      this.journaling = false;
      this.journalStop = resourceExhausted(
        LIMIT_NAMES.maxJournalBytes,
        `the reply passed ${this.core.limits.maxJournalBytes} bytes at frame ${index}; it cannot be resumed from there`,
      );
      await this.writeEnd(this.journalStop);
      return;
    }
    try {
      await this.core.journal.append(this.key, index, bytes, this.ttl);
      this.journaled += bytes.length;
    } catch (err) {
      this.journalFailed(err);
      // A journal that refused for room (the instance's budget) still takes the end marker,
      // so a resume reaching this frame is told why rather than left waiting.
      if (err instanceof ConnectError && err.code === Code.ResourceExhausted)
        await this.writeEnd(err);
    }
  }

  private journalFailed(err: unknown): void {
    this.journaling = false;
    this.journalStop = err instanceof ConnectError ? err : undefined;
    this.core.logger.warn("reply journal: stopped journaling, the reply cannot be resumed", {
      turnId: this.turnId,
      error: err instanceof Error ? err.message : String(err),
    });
  }

  private async finish(end: ConnectError | undefined): Promise<ReplyStep> {
    this.ended = { end };
    this.release();
    const stopped = this.signal.aborted;
    this.core.metrics.commit(end === undefined ? "ok" : stopped ? "cancelled" : "failed");
    if (end && !stopped && end.code !== Code.Canceled) {
      // The client gets the status; the operator gets the reason (never the transcript).
      this.core.logger.error("workflow failed", {
        turnId: this.turnId,
        error: String(end.cause ?? end),
      });
    }
    if (this.journaling) await this.writeEnd(end);
    return this.ended;
  }

  private async writeEnd(end: ConnectError | undefined): Promise<void> {
    const marker: JournalEnd = end
      ? { code: end.code, message: end.rawMessage }
      : { code: 0, message: this.core.endMessage };
    try {
      await this.core.journal.end(this.key, marker, this.ttl);
    } catch (err) {
      this.journalFailed(err);
    }
  }

  private async runHooks(): Promise<void> {
    if (this.settleTimer !== undefined) this.core.clock.clearTimer(this.settleTimer);
    this.core.runs.remove(this);
    this.headers = undefined;
    const hooks = this.hooks;
    this.hooks = [];
    for (const fn of hooks) {
      try {
        await fn();
      } catch (err) {
        this.core.logger.error("reply end hook failed", {
          turnId: this.turnId,
          error: String(err),
        });
      }
    }
  }
}

/** The runs of this instance not yet settled, by session: resumes and new COMMITs find them. */
export class ReplyRuns {
  private readonly byDevice = new Map<string, Map<string, ReplyRun>>();

  add(run: ReplyRun): void {
    let m = this.byDevice.get(run.key.hardwareId);
    if (!m) {
      m = new Map();
      this.byDevice.set(run.key.hardwareId, m);
    }
    m.set(run.key.sessionId, run);
  }

  get(key: SessionKey): ReplyRun | undefined {
    return this.byDevice.get(key.hardwareId)?.get(key.sessionId);
  }

  remove(run: ReplyRun): void {
    const m = this.byDevice.get(run.key.hardwareId);
    if (m?.get(run.key.sessionId) !== run) return;
    m.delete(run.key.sessionId);
    if (m.size === 0) this.byDevice.delete(run.key.hardwareId);
  }

  /**
   * Settles the device's earlier replies no call is reading (a dropped connection the client
   * did not resume): the next turn's memory then holds what they delivered.
   */
  async settleDevice(hardwareId: string): Promise<void> {
    const m = this.byDevice.get(hardwareId);
    if (!m) return;
    await Promise.all([...m.values()].filter((run) => run.detached).map((run) => run.settle()));
  }
}
