import type { Transport } from "@connectrpc/connect";
import type { Limits } from "../../src/core/limits.js";

/** What a contract run is pointed at: one transport to one running server. */
export interface Target {
  /** e.g. "node/grpc" */
  name: string;
  transport: Transport;
  /** The limits the server was started with (the suite breaches each one). */
  limits: Limits;
  /** Pause between echo sentences on the server: how long a long reply takes. */
  echoDelayMs: number;
  /**
   * Reply workflows the server behind the target has started so far (its
   * ptt_workflow_runs_total), where a test can read it: a resume must start none.
   */
  workflowRuns?: () => Promise<number>;
}

/** ptt_workflow_runs_total from a server's /metrics. */
export async function workflowRunsAt(baseUrl: string): Promise<number> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const m = /^ptt_workflow_runs_total (\d+)$/m.exec(text);
  if (!m) throw new Error("no ptt_workflow_runs_total in /metrics");
  return Number(m[1]);
}

/**
 * What a server under test can or cannot do. Every skip in the suite comes from
 * here, and each runtime states its gaps (with the reason) in one place.
 */
export interface Capabilities {
  /** Moves the server's clock forward (in-process servers only): TTL tests. */
  advanceClock?: (ms: number) => void;
  /** The transport delivers response headers with the trailers, at the end (the bridge). */
  headersWithTrailers?: boolean;
  /**
   * The server answers an over-size upload before reading it and closes that HTTP/1.1
   * connection, so the pooled client's next call on it fails once (workerd).
   */
  oversizeRequestResetsConnection?: boolean;
  /**
   * The reply's text_chunks are sentence groups (the voice workflow), not one per sentence
   * (the echo workflow): the text is the same, the number of chunks is not.
   */
  groupedSentences?: boolean;
  /**
   * Instances behind the target, calls alternating between them (a shared store): reply
   * slots are per instance, so filling them takes this many times max_concurrent_replies.
   */
  instances?: number;
  /**
   * The transport cannot carry the ptt-resume-from request header, so resume cases are skipped
   * (the reason is given where it is declared).
   */
  noResumeHeader?: boolean;
}

/** Limits every test server is started with: small, so each breach is cheap to reach. */
export const TEST_LIMITS: Limits = {
  maxChunkTextBytes: 1024,
  maxSessionTextBytes: 4096,
  maxChunksPerSession: 40,
  maxAudioBytesPerSession: 64 * 1024,
  maxScreenshotBytes: 8 * 1024,
  maxOpenSessionsPerDevice: 8,
  maxOpenSessionsPerInstance: 100_000,
  maxBufferedBytesPerInstance: 1024 * 1024 * 1024,
  maxTombstonesPerDevice: 1024,
  idleTtlMs: 60_000,
  maxHoldMs: 600_000,
  tombstoneTtlMs: 300_000,
  maxConcurrentReplies: 120,
  // One device on one connection fills every slot in the suite's case; the fair shares have
  // their own tests (test/limits/reply-fairness.test.ts).
  maxRepliesPerDevice: 120,
  maxRepliesPerConnection: 120,
  replyStallMs: 30_000,
  maxRequestBytes: 128 * 1024,
  // Generous: the suite's cases send bursts per device; test/limits/rate-limits.test.ts
  // breaches these two with a frozen clock.
  maxCollectsPerSecond: 5000,
  maxCommitsPerMinute: 5000,
  maxJournalBytes: 8 * 1024 * 1024,
};

export const TEST_ECHO_DELAY_MS = 5;
