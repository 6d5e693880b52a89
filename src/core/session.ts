import { ChunkMode } from "../gen/streaming_pb.js";
import { invalidArgument, resourceExhausted } from "./errors.js";
import { LIMIT_NAMES, type Limits } from "./limits.js";
import { mergeUnspecified, utf8Length } from "./text-merge.js";

/**
 * One hold of the key, as plain data so that any store (memory, Redis, Durable
 * Object, Deno KV) can keep it, and the pure rules below so every store merges
 * the same way. Rules never mutate their input until every check has passed, so
 * a rejected chunk leaves the session exactly as it was.
 */

export interface SessionKey {
  hardwareId: string;
  sessionId: string;
}

export interface AudioPiece {
  data: Uint8Array;
  encoding: string;
  sampleRate: number;
  channels: number;
}

export interface Screenshot {
  data: string;
  width?: number | undefined;
  height?: number | undefined;
}

/** A validated piece of a hold: one COLLECT, or one of a COMMIT's final pieces. */
export interface Chunk {
  /** > 0: sequence number; 0: unsequenced (arrival order). */
  seq: number;
  mode: ChunkMode;
  text: string;
  audio?: AudioPiece | undefined;
  screenshot?: Screenshot | undefined;
}

/** Where a piece sits: ordered by key, then arrival. Unsequenced pieces key on the last seq. */
interface Placed {
  key: number;
  order: number;
}

export interface TextPart extends Placed {
  text: string;
}

export interface AudioPart extends Placed {
  audio: AudioPiece;
}

export interface OpenSession {
  state: "open";
  hardwareId: string;
  sessionId: string;
  /** UNSPECIFIED until a chunk names a mode; then fixed. */
  mode: ChunkMode;
  createdAt: number;
  touchedAt: number;
  /** Sequence numbers stored so far (duplicates are detected against these). */
  seqs: number[];
  lastSeq: number;
  /** Chunks accepted, sequenced or not: the per-session chunk limit counts these. */
  chunks: number;
  /** UNSPECIFIED: the merged text. SNAPSHOT: the newest snapshot. */
  text: string;
  /** SNAPSHOT: where the current snapshot sits. */
  textAt: Placed;
  /** DELTA: every text piece, in commit order. */
  parts: TextPart[];
  textBytes: number;
  audio: AudioPart[];
  audioBytes: number;
  screenshot?: Screenshot | undefined;
  /**
   * Characters of the screenshot, kept beside it so the byte budget never reads the
   * screenshot itself (a driver may hand out a record without it: store-driver.ts).
   */
  screenshotBytes: number;
}

export type SealedState = "committed" | "cancelled" | "expired";

/** What remains of a sealed session, so late requests get a precise answer. */
export interface Tombstone {
  state: SealedState;
  hardwareId: string;
  sessionId: string;
  sealedAt: number;
  /** Only for "expired": why, for the error message. */
  expiredBy?: "idle" | "hold" | undefined;
}

export type SessionRecord = OpenSession | Tombstone;

export type CollectOutcome = "accepted" | "duplicate" | "stale";

/** What the workflow receives: the whole hold, merged. */
export interface CommittedTurn {
  turnId: string;
  hardwareId: string;
  sessionId: string;
  text: string;
  audio: AudioPiece[];
  screenshot?: Screenshot | undefined;
  /** COLLECT chunks the hold buffered (not the COMMIT's own chunk_text or prompt). */
  chunks: number;
  heldMs: number;
}

export function openSession(key: SessionKey, now: number): OpenSession {
  return {
    state: "open",
    hardwareId: key.hardwareId,
    sessionId: key.sessionId,
    mode: ChunkMode.UNSPECIFIED,
    createdAt: now,
    touchedAt: now,
    seqs: [],
    lastSeq: 0,
    chunks: 0,
    text: "",
    textAt: { key: 0, order: 0 },
    parts: [],
    textBytes: 0,
    audio: [],
    audioBytes: 0,
    screenshot: undefined,
    screenshotBytes: 0,
  };
}

/**
 * A shallow copy for collectChunk to change (it replaces arrays, never edits them). Every
 * field spelled out: one object shape, much faster than a spread on the COLLECT path.
 */
export function copyOpen(s: OpenSession): OpenSession {
  return {
    state: "open",
    hardwareId: s.hardwareId,
    sessionId: s.sessionId,
    mode: s.mode,
    createdAt: s.createdAt,
    touchedAt: s.touchedAt,
    seqs: s.seqs,
    lastSeq: s.lastSeq,
    chunks: s.chunks,
    text: s.text,
    textAt: s.textAt,
    parts: s.parts,
    textBytes: s.textBytes,
    audio: s.audio,
    audioBytes: s.audioBytes,
    screenshot: s.screenshot,
    screenshotBytes: s.screenshotBytes,
  };
}

/** The session's mode after this chunk, or INVALID_ARGUMENT if it would switch modes. */
function modeFor(session: OpenSession, chunk: Chunk): ChunkMode {
  if (chunk.mode === ChunkMode.UNSPECIFIED || chunk.mode === session.mode) return session.mode;
  if (session.chunks === 0) return chunk.mode;
  throw invalidArgument(
    "chunk_mode",
    `session ${session.sessionId} collects in ${ChunkMode[session.mode]} mode; a chunk cannot switch it to ${ChunkMode[chunk.mode]}`,
  );
}

/** Checks a single chunk against the per-chunk limits (independent of any session). */
export function checkChunkLimits(chunk: Chunk, limits: Limits, field: string): void {
  const bytes = utf8Length(chunk.text);
  if (bytes > limits.maxChunkTextBytes) {
    throw resourceExhausted(
      LIMIT_NAMES.maxChunkTextBytes,
      `${field} is ${bytes} bytes; at most ${limits.maxChunkTextBytes} are allowed per chunk`,
    );
  }
  if (chunk.screenshot && chunk.screenshot.data.length > limits.maxScreenshotBytes) {
    throw resourceExhausted(
      LIMIT_NAMES.maxScreenshotBytes,
      `screenshot is ${chunk.screenshot.data.length} bytes; at most ${limits.maxScreenshotBytes} are allowed`,
    );
  }
}

/** `list` with `item` in its place: a new list, or `list` itself when `inPlace`. */
function insertPlaced<T extends Placed>(list: T[], item: T, inPlace: boolean): T[] {
  let i = list.length;
  while (i > 0) {
    const prev = list[i - 1] as T;
    if (prev.key < item.key || (prev.key === item.key && prev.order < item.order)) break;
    i--;
  }
  const into = inPlace ? list : list.slice();
  if (i === into.length) into.push(item);
  else into.splice(i, 0, item);
  return into;
}

/**
 * Applies one COLLECT chunk. Returns the outcome; the session's fields are reassigned only
 * when every limit holds (a breach throws RESOURCE_EXHAUSTED and changes nothing). Its arrays
 * are replaced, never edited, so a shallow copy leaves the original intact; `inPlace`: the
 * caller owns them (no copy shares them), and they grow in place (no copy per chunk).
 */
export function collectChunk(
  session: OpenSession,
  chunk: Chunk,
  limits: Limits,
  now: number,
  inPlace = false,
): CollectOutcome {
  if (chunk.seq > 0 && session.seqs.includes(chunk.seq)) {
    session.touchedAt = now;
    return "duplicate";
  }
  const mode = modeFor(session, chunk);
  const olderThanLast = chunk.seq > 0 && chunk.seq <= session.lastSeq;
  // Old clients: an older seq after a newer one is dropped whole.
  if (olderThanLast && mode === ChunkMode.UNSPECIFIED) {
    session.touchedAt = now;
    return "stale";
  }
  // SNAPSHOT: an older snapshot never overwrites a newer one; its audio still counts.
  const staleText = olderThanLast && mode === ChunkMode.SNAPSHOT;
  if (staleText && !chunk.audio) {
    session.touchedAt = now;
    return "stale";
  }
  if (session.chunks >= limits.maxChunksPerSession) {
    throw resourceExhausted(
      LIMIT_NAMES.maxChunksPerSession,
      `session ${session.sessionId} already holds ${session.chunks} chunks; chunk ${chunk.seq} was not added`,
    );
  }
  const next = placeChunk(session, chunk, mode, staleText, limits, inPlace);
  // Field by field (no Object.assign of a temporary): this runs on every COLLECT.
  session.text = next.text;
  session.textAt = next.textAt;
  session.parts = next.parts;
  session.textBytes = next.textBytes;
  session.audio = next.audio;
  session.audioBytes = next.audioBytes;
  session.screenshot = next.screenshot;
  session.screenshotBytes = next.screenshotBytes;
  session.mode = mode;
  session.touchedAt = now;
  session.chunks += 1;
  if (chunk.seq > 0) {
    // A new array unless inPlace, as every field here: a caller may pass a shallow copy.
    const seqs = inPlace ? session.seqs : session.seqs.slice();
    seqs.push(chunk.seq);
    session.seqs = seqs;
    if (chunk.seq > session.lastSeq) session.lastSeq = chunk.seq;
  }
  return "accepted";
}

/** What placeChunk computes; collectChunk copies it field by field, so a new field goes there too. */
type Placement = Pick<
  OpenSession,
  | "text"
  | "textAt"
  | "parts"
  | "textBytes"
  | "audio"
  | "audioBytes"
  | "screenshot"
  | "screenshotBytes"
>;

/**
 * Computes the buffer with the chunk in its place, checking the per-session size limits
 * first: `inPlace` (collectChunk's) lets the session's own lists grow, and only once every
 * check has passed.
 */
function placeChunk(
  session: OpenSession,
  chunk: Chunk,
  mode: ChunkMode,
  skipText: boolean,
  limits: Limits,
  inPlace = false,
): Placement {
  const key = chunk.seq > 0 ? chunk.seq : session.lastSeq;
  const order = session.chunks + 1;
  let { text, textAt, parts, textBytes, audio, audioBytes, screenshot, screenshotBytes } = session;
  const addsText = chunk.text.length > 0 && !skipText;
  if (addsText) {
    if (mode === ChunkMode.DELTA) {
      textBytes += utf8Length(chunk.text);
    } else if (mode === ChunkMode.SNAPSHOT) {
      text = chunk.text;
      textAt = { key, order };
      textBytes = utf8Length(text);
    } else {
      text = mergeUnspecified(text, chunk.text);
      textBytes = utf8Length(text);
    }
    if (textBytes > limits.maxSessionTextBytes) {
      throw resourceExhausted(
        LIMIT_NAMES.maxSessionTextBytes,
        `session ${session.sessionId} text would be ${textBytes} bytes; at most ${limits.maxSessionTextBytes} are allowed`,
      );
    }
  }
  const piece = chunk.audio && chunk.audio.data.length > 0 ? chunk.audio : undefined;
  if (piece) {
    audioBytes += piece.data.length;
    if (audioBytes > limits.maxAudioBytesPerSession) {
      throw resourceExhausted(
        LIMIT_NAMES.maxAudioBytesPerSession,
        `session ${session.sessionId} audio would be ${audioBytes} bytes; at most ${limits.maxAudioBytesPerSession} are allowed`,
      );
    }
  }
  // Every check passed. Parts as object literals (a spread of a Placed was a hot spot).
  if (addsText && mode === ChunkMode.DELTA) {
    parts = insertPlaced(parts, { key, order, text: chunk.text }, inPlace);
  }
  if (piece) audio = insertPlaced(audio, { key, order, audio: piece }, inPlace);
  if (chunk.screenshot && !skipText) {
    screenshot = chunk.screenshot;
    screenshotBytes = chunk.screenshot.data.length;
  }
  return { text, textAt, parts, textBytes, audio, audioBytes, screenshot, screenshotBytes };
}

/**
 * The turn a COMMIT would run: the buffer plus the COMMIT's own pieces (chunk_text,
 * then prompt), each one more chunk after the last. Pure: the caller seals the
 * session only if this returns, so a rejected COMMIT leaves the buffer intact.
 */
export function commitTurn(
  session: OpenSession,
  pieces: Chunk[],
  limits: Limits,
  now: number,
  turnId: string,
): CommittedTurn {
  let mode = session.mode;
  let state: Placement = session;
  let order = session.chunks;
  for (const piece of pieces) {
    mode = modeFor({ ...session, mode, chunks: order }, piece);
    order++;
    const after = { ...session, ...state, mode, chunks: order, lastSeq: Number.MAX_SAFE_INTEGER };
    // Placed after everything: the key beats any seq, the order any arrival.
    state = placeChunk(after, { ...piece, seq: 0 }, mode, false, limits);
  }
  const text = mode === ChunkMode.DELTA ? state.parts.map((p) => p.text).join("") : state.text;
  const audio = state.audio.map((p) => p.audio);
  if (text.length === 0 && audio.length === 0) {
    throw invalidArgument(
      "prompt",
      `session ${session.sessionId} has nothing to commit (no chunk text, no prompt, no audio); it stays open`,
    );
  }
  return {
    turnId,
    hardwareId: session.hardwareId,
    sessionId: session.sessionId,
    text,
    audio,
    screenshot: state.screenshot,
    // The hold's COLLECT chunks: the COMMIT's own chunk_text and prompt are not chunks collected.
    chunks: session.chunks,
    heldMs: now - session.createdAt,
  };
}

/** Bytes a session holds, for the buffered-bytes gauge. */
export function bufferedBytes(session: OpenSession): number {
  // Records stored before screenshotBytes existed (a Durable Object's, Redis') count the screenshot.
  const shot = session.screenshotBytes ?? session.screenshot?.data.length ?? 0;
  return session.textBytes + session.audioBytes + shot;
}

/** An OPEN session's end of life: when it expires if nothing else happens, and why. */
export interface Expiry {
  at: number;
  why: "idle" | "hold";
}

/** expiryOf(…).at without the object (read on every step). */
export function expiryAt(session: OpenSession, limits: Limits): number {
  return Math.min(session.touchedAt + limits.idleTtlMs, session.createdAt + limits.maxHoldMs);
}

export function expiryOf(session: OpenSession, limits: Limits): Expiry {
  const idle = session.touchedAt + limits.idleTtlMs;
  const hold = session.createdAt + limits.maxHoldMs;
  // Whichever deadline came first is the reason, however late expiry is noticed.
  return idle <= hold ? { at: idle, why: "idle" } : { at: hold, why: "hold" };
}

export function seal(
  record: SessionKey,
  state: SealedState,
  now: number,
  expiredBy?: "idle" | "hold",
): Tombstone {
  return {
    state,
    hardwareId: record.hardwareId,
    sessionId: record.sessionId,
    sealedAt: now,
    expiredBy,
  };
}
