import type { CollectOutcome } from "./session.js";

export type ChunkOutcome = CollectOutcome | "sealed" | "rejected";
export type ResumeOutcome = "ok" | "not_found" | "out_of_range";
export type CommitOutcome =
  | "ok"
  | "already_committed"
  | "sealed"
  | "rejected"
  | "empty"
  | "failed"
  | "cancelled";

const LATENCY_BUCKETS_MS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

/**
 * The server's counters and the Prometheus text rendering of docs/protocol.md §7. Plain
 * numbers in memory: cheap enough to bump on every chunk.
 */
export class Metrics {
  readonly chunks = new Map<ChunkOutcome, number>();
  readonly commits = new Map<CommitOutcome, number>();
  readonly resumes = new Map<ResumeOutcome, number>();
  /** Workflows started (a resumed COMMIT starts none). */
  workflowRuns = 0;
  expirations = 0;
  interrupts = 0;
  interruptedReplies = 0;
  private readonly buckets = new Array<number>(LATENCY_BUCKETS_MS.length).fill(0);
  private latencyCount = 0;
  private latencySum = 0;

  chunk(outcome: ChunkOutcome): void {
    this.chunks.set(outcome, (this.chunks.get(outcome) ?? 0) + 1);
  }

  commit(outcome: CommitOutcome): void {
    this.commits.set(outcome, (this.commits.get(outcome) ?? 0) + 1);
  }

  resume(outcome: ResumeOutcome): void {
    this.resumes.set(outcome, (this.resumes.get(outcome) ?? 0) + 1);
  }

  firstFrame(ms: number): void {
    this.latencyCount++;
    this.latencySum += ms;
    for (let i = 0; i < LATENCY_BUCKETS_MS.length; i++) {
      if (ms <= (LATENCY_BUCKETS_MS[i] as number)) (this.buckets[i] as number)++;
    }
  }

  /** Prometheus text exposition format 0.0.4. */
  render(gauges: { openSessions: number; bufferedBytes: number; repliesInFlight: number }): string {
    const out: string[] = [];
    const gauge = (name: string, help: string, value: number) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, `${name} ${value}`);
    };
    const counter = (name: string, help: string, label: string, values: Map<string, number>) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`);
      for (const [k, v] of values) out.push(`${name}{${label}="${k}"} ${v}`);
    };
    gauge("ptt_open_sessions", "Sessions collecting chunks (OPEN).", gauges.openSessions);
    gauge("ptt_buffered_bytes", "Bytes held in open sessions' buffers.", gauges.bufferedBytes);
    gauge("ptt_replies_in_flight", "Replies running on this instance.", gauges.repliesInFlight);
    counter("ptt_chunks_total", "COLLECT chunks by outcome.", "outcome", this.chunks);
    counter("ptt_commits_total", "COMMITs by outcome.", "outcome", this.commits);
    counter(
      "ptt_resumes_total",
      "Resumed COMMITs (ptt-resume-from) by outcome.",
      "outcome",
      this.resumes,
    );
    out.push(
      "# HELP ptt_workflow_runs_total Reply workflows started.",
      "# TYPE ptt_workflow_runs_total counter",
      `ptt_workflow_runs_total ${this.workflowRuns}`,
      "# HELP ptt_expirations_total Open sessions expired by TTL.",
      "# TYPE ptt_expirations_total counter",
      `ptt_expirations_total ${this.expirations}`,
      "# HELP ptt_interrupts_total InterruptSession calls.",
      "# TYPE ptt_interrupts_total counter",
      `ptt_interrupts_total ${this.interrupts}`,
      "# HELP ptt_interrupted_replies_total Replies aborted by interrupt or barge-in.",
      "# TYPE ptt_interrupted_replies_total counter",
      `ptt_interrupted_replies_total ${this.interruptedReplies}`,
      "# HELP ptt_commit_first_frame_ms COMMIT received to first reply frame, milliseconds.",
      "# TYPE ptt_commit_first_frame_ms histogram",
    );
    LATENCY_BUCKETS_MS.forEach((le, i) => {
      out.push(`ptt_commit_first_frame_ms_bucket{le="${le}"} ${this.buckets[i]}`);
    });
    out.push(
      `ptt_commit_first_frame_ms_bucket{le="+Inf"} ${this.latencyCount}`,
      `ptt_commit_first_frame_ms_sum ${this.latencySum}`,
      `ptt_commit_first_frame_ms_count ${this.latencyCount}`,
    );
    return `${out.join("\n")}\n`;
  }
}
