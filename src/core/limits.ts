/** Every limit of docs/protocol.md §5. Each breach is RESOURCE_EXHAUSTED naming the limit's key. */
export interface Limits {
  /** UTF-8 bytes of one chunk's text (chunk_text or prompt). */
  maxChunkTextBytes: number;
  /** UTF-8 bytes of a session's merged text. */
  maxSessionTextBytes: number;
  maxChunksPerSession: number;
  maxAudioBytesPerSession: number;
  /** Characters of one base64 screenshot. */
  maxScreenshotBytes: number;
  maxOpenSessionsPerDevice: number;
  maxOpenSessionsPerInstance: number;
  /** Bytes (text, audio, screenshots) held in all open sessions of this instance. */
  maxBufferedBytesPerInstance: number;
  /** Sealed sessions remembered per device (its oldest are forgotten first). */
  maxTombstonesPerDevice: number;
  /** An OPEN session with no chunk for this long expires. */
  idleTtlMs: number;
  /** An OPEN session older than this expires, however busy. */
  maxHoldMs: number;
  /** How long a sealed session's tombstone answers late requests. */
  tombstoneTtlMs: number;
  maxConcurrentReplies: number;
  /**
   * Replies one device may run at once on this instance (a share of max_concurrent_replies:
   * one device cannot take every slot).
   */
  maxRepliesPerDevice: number;
  /**
   * Replies one connection (HTTP/1.1 socket, HTTP/2 connection, bridge socket) may run at once
   * on this instance. Default a quarter of max_concurrent_replies.
   */
  maxRepliesPerConnection: number;
  /**
   * A reply whose reader took none of it for this long is ended (RESOURCE_EXHAUSTED) and its
   * slot freed: a connection that stops reading holds no slot for longer.
   */
  replyStallMs: number;
  /** Largest request message accepted by the transports. */
  maxRequestBytes: number;
  /** COLLECTs one device may send per second (bursts of as many at once). */
  maxCollectsPerSecond: number;
  /** COMMITs that run the workflow, per device and minute (bursts of as many at once). */
  maxCommitsPerMinute: number;
  /** Bytes of one reply's journal (its encoded frames); a resume past them is refused. */
  maxJournalBytes: number;
}

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxChunkTextBytes: 16 * 1024,
  maxSessionTextBytes: 64 * 1024,
  maxChunksPerSession: 2000,
  maxAudioBytesPerSession: 8 * 1024 * 1024,
  maxScreenshotBytes: 4 * 1024 * 1024,
  maxOpenSessionsPerDevice: 8,
  maxOpenSessionsPerInstance: 100_000,
  maxBufferedBytesPerInstance: 1024 * 1024 * 1024,
  maxTombstonesPerDevice: 1024,
  idleTtlMs: 60_000,
  maxHoldMs: 600_000,
  tombstoneTtlMs: 300_000,
  maxConcurrentReplies: 256,
  maxRepliesPerDevice: 8,
  maxRepliesPerConnection: 64,
  replyStallMs: 30_000,
  maxRequestBytes: 6 * 1024 * 1024,
  maxCollectsPerSecond: 200,
  maxCommitsPerMinute: 60,
  maxJournalBytes: 8 * 1024 * 1024,
});

/** Wire names of the limits (error messages, bridge Hello, env vars, docs). */
export const LIMIT_NAMES: Readonly<Record<keyof Limits, string>> = Object.freeze({
  maxChunkTextBytes: "max_chunk_text_bytes",
  maxSessionTextBytes: "max_session_text_bytes",
  maxChunksPerSession: "max_chunks_per_session",
  maxAudioBytesPerSession: "max_audio_bytes_per_session",
  maxScreenshotBytes: "max_screenshot_bytes",
  maxOpenSessionsPerDevice: "max_open_sessions_per_device",
  maxOpenSessionsPerInstance: "max_open_sessions_per_instance",
  maxBufferedBytesPerInstance: "max_buffered_bytes_per_instance",
  maxTombstonesPerDevice: "max_tombstones_per_device",
  idleTtlMs: "idle_ttl_ms",
  maxHoldMs: "max_hold_ms",
  tombstoneTtlMs: "tombstone_ttl_ms",
  maxConcurrentReplies: "max_concurrent_replies",
  maxRepliesPerDevice: "max_replies_per_device",
  maxRepliesPerConnection: "max_replies_per_connection",
  replyStallMs: "reply_stall_ms",
  maxRequestBytes: "max_request_bytes",
  maxCollectsPerSecond: "max_collects_per_second",
  maxCommitsPerMinute: "max_commits_per_minute",
  maxJournalBytes: "max_journal_bytes",
});

/**
 * The limits in force: defaults under what was set. The per-device and per-connection reply
 * shares follow max_concurrent_replies when only it was set, and never exceed it.
 */
export function resolveLimits(set: Partial<Limits> = {}): Readonly<Limits> {
  const limits = { ...DEFAULT_LIMITS, ...set };
  const max = limits.maxConcurrentReplies;
  if (set.maxRepliesPerConnection === undefined) {
    limits.maxRepliesPerConnection = Math.max(1, Math.ceil(max / 4));
  }
  limits.maxRepliesPerConnection = Math.min(limits.maxRepliesPerConnection, max);
  limits.maxRepliesPerDevice = Math.min(limits.maxRepliesPerDevice, max);
  return Object.freeze(limits);
}
