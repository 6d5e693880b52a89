import type { MemoryTurn } from "./memory/turns.js";
import type { Chunk, CollectOutcome, CommittedTurn, SealedState, SessionKey } from "./session.js";

/** Time and timers, injected so TTL behaviour is testable and runtimes can differ. */
export interface Clock {
  now(): number;
  /** Runs `fn` once after `ms`; the handle is only ever passed back to clearTimer. */
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
}

export interface CollectResult {
  outcome: CollectOutcome;
  /** Highest sequence number stored for the session. */
  lastSeq: number;
  /** True when this chunk opened the session (the device's first chunk of a new hold). */
  created: boolean;
}

export type CancelResult = "cancelled" | "unknown" | SealedState;

export interface StoreStats {
  openSessions: number;
  bufferedBytes: number;
}

/**
 * Where holds live. Each method is ONE atomic step on one session, so that a
 * Durable Object (single-threaded) or a Redis script can implement it as such.
 * Errors are ConnectErrors built by core (limits, sealed sessions).
 */
export interface SessionStore {
  /** Stores a COLLECT chunk, opening the session if needed (subject to the open-session limits). */
  collect(key: SessionKey, chunk: Chunk): Promise<CollectResult>;
  /**
   * Consume-and-seal: merges the buffer with the COMMIT's pieces, seals the session as
   * COMMITTED and returns the turn, or throws and leaves the buffer untouched.
   */
  commit(key: SessionKey, pieces: Chunk[], turnId: string): Promise<CommittedTurn>;
  /** Drops the buffer and seals the session CANCELLED (an unknown session gets a tombstone). */
  cancel(key: SessionKey): Promise<CancelResult>;
  /** Expires overdue sessions and forgets old tombstones; returns how many expired. */
  sweep(): Promise<number>;
  stats(): Promise<StoreStats>;
  /** Resolves when the store can serve requests (readiness). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** A stop for running replies, as it travels between instances. */
export type ReplyStop =
  | {
      kind: "interrupt";
      hardwareId: string;
      why: "interrupted" | "barge-in";
      /** Barge-in spares the hold that caused it. */
      except?: string | undefined;
    }
  | { kind: "cancel"; hardwareId: string; sessionId: string };

/**
 * How InterruptSession, CANCEL and barge-in reach replies running on other instances (those
 * sharing a Redis). Each instance stops its own replies itself; the bus carries the stop to the
 * others, which stop theirs the moment it arrives. One process alone needs no bus (localReplyBus).
 */
export interface ReplyBus {
  /**
   * Sends `stop` to every other instance. With `answers`, resolves with the session ids the
   * others stopped (each answers once it has stopped them; one that does not answer in time is
   * left out); without, resolves once the stop is sent, with []. Rejects when it cannot be sent.
   */
  publish(stop: ReplyStop, answers: boolean): Promise<string[]>;
  /** Hands every stop from another instance to `apply`, which returns the ids it stopped. */
  listen(apply: (stop: ReplyStop) => string[]): void;
  close(): Promise<void>;
}

export type ReplyPart =
  | { kind: "text"; text: string }
  | {
      kind: "audio";
      data: Uint8Array;
      /** e.g. "int16", "float32" */
      dtype: string;
      sampleRate: number;
      channels: number;
    }
  | { kind: "action"; json: string; featureId?: string | undefined };

/** What the core tells a workflow about its reply while it runs. */
export interface ReplyContext {
  /**
   * The text of the text_chunk frames written to the client's connection so far (a frame
   * the workflow produced but the transport never wrote is not in it).
   */
  delivered(): string;
  /**
   * Runs `fn` once the reply is over (completed, failed or stopped), when delivered() is final
   * and before the call's status goes out. Errors are logged, never surfaced to the client.
   */
  onEnd(fn: () => void | Promise<void>): void;
  /**
   * Sets a response header of the reply (e.g. `ptt-transcript`). Headers go out with the first
   * frame, so set it before yielding one; the bridge and Workers deliver it with the call's end.
   */
  header(name: string, value: string): void;
}

/** The reply to a committed turn. Must stop promptly when `signal` aborts. */
export type Workflow = (
  turn: CommittedTurn,
  signal: AbortSignal,
  /** Always passed by the core; optional so a workflow can be driven alone in a test. */
  reply?: ReplyContext,
) => AsyncIterable<ReplyPart>;

/**
 * Per-device conversation memory (the turns the voice workflow sends before the new one).
 * Implementations: in-process (memory/in-process-memory.ts), Deno KV, Durable Object storage.
 * Each keeps a device's turns bounded with memory/turns.ts `appendBounded` (turns, bytes) and
 * forgets a device after its idle TTL. One device's calls may run on different instances: a
 * shared implementation must make remember() atomic per device (read-append-write).
 */
export interface ConversationMemory {
  /** The device's remembered turns, oldest first ([] when none). */
  recall(hardwareId: string, signal?: AbortSignal): Promise<MemoryTurn[]>;
  /** Appends one turn, dropping the oldest past the bounds. */
  remember(hardwareId: string, turn: MemoryTurn): Promise<void>;
  /** Forgets everything the device said and heard (a client's memory reset). */
  forget(hardwareId: string): Promise<void>;
}

/** Structured log sink; transcript text is only ever passed at debug level. */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/**
 * How a reply ended, as its journal keeps it: `code` 0 is a completed reply whose last frame
 * was end_message `message`; any other code is the status the call ended with (CANCELLED
 * after an interrupt, RESOURCE_EXHAUSTED where journaling stopped at max_journal_bytes).
 */
export interface JournalEnd {
  code: number;
  message: string;
}

/** What a journal holds for one reply, as a resume first reads it. */
export interface JournalHead {
  turnId: string;
  /** Frames appended so far (numbered 0…frames-1). */
  frames: number;
  /** Set once the reply ended (or journaling stopped). */
  end?: JournalEnd | undefined;
}

/** One step of a journal read: a frame (its encoded StreamResponse), or the end. */
export type JournalEntry =
  | { kind: "frame"; index: number; bytes: Uint8Array }
  | { kind: "end"; end: JournalEnd };

/**
 * Where a reply's frames are kept while it may be resumed (docs/protocol.md §9), keyed by the
 * session. Storage only: the core numbers the frames, counts their bytes against
 * max_journal_bytes, decides what a resume may read and how it ends. One writer per reply
 * (the instance running it); any instance may read. Implementations: in-process
 * (journal/in-process-journal.ts), Redis (a Stream per reply), Durable Object storage, Deno KV.
 */
export interface ReplyJournal {
  /** Starts the journal of a reply, before its first frame. */
  open(key: SessionKey, turnId: string, ttlMs: number): Promise<void>;
  /** Appends frame `index` (the next one). The journal lives `ttlMs` past its last write. */
  append(key: SessionKey, index: number, bytes: Uint8Array, ttlMs: number): Promise<void>;
  /** The reply is over: no frame follows. The journal is dropped `ttlMs` later. */
  end(key: SessionKey, end: JournalEnd, ttlMs: number): Promise<void>;
  /** The journal's head, or undefined when there is none (never committed, or expired). */
  head(key: SessionKey): Promise<JournalHead | undefined>;
  /**
   * Frames from `from` in order, then the end once it is written: reads what is there, then
   * follows live. Returns without an end when `signal` aborts, or when nothing new arrived for
   * `idleMs` (a writer that is gone: the caller says so).
   */
  read(
    key: SessionKey,
    from: number,
    signal: AbortSignal,
    idleMs: number,
  ): AsyncIterable<JournalEntry>;
  close(): Promise<void>;
}
