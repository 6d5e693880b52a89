import type {
  AudioPart,
  AudioPiece,
  OpenSession,
  Screenshot,
  Tombstone,
} from "../../core/session.js";
import { utf8Length } from "../../core/text-merge.js";

/**
 * What the Deno KV store keeps, and how it builds one atomic step (deno-kv-store.ts): records
 * are JSON (the open session minus its audio and screenshot, which are blobs under their own
 * keys), turned back into core's OpenSession as copies, so the pure rules never touch what was read.
 */

const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeRecord(record: StoredRecord): Uint8Array {
  return encoder.encode(JSON.stringify(record));
}

/** undefined when the parts do not make a record (Deno KV reclaimed some of them). */
export function decodeRecord(parts: Uint8Array[]): StoredRecord | undefined {
  try {
    return JSON.parse(decoder.decode(concat(parts))) as StoredRecord;
  } catch {
    return undefined;
  }
}

/** Audio and screenshots live under their own keys (immutable, random ref); the record names them. */
export interface BlobRef {
  ref: string;
  bytes: number;
}
export interface StoredAudio extends BlobRef {
  key: number;
  order: number;
  encoding: string;
  sampleRate: number;
  channels: number;
}
export interface StoredShot extends BlobRef {
  /** Characters of the base64 text (what the byte budget counts). */
  chars: number;
  width?: number | undefined;
  height?: number | undefined;
}
export interface StoredOpen extends Omit<OpenSession, "audio" | "screenshot"> {
  audio: StoredAudio[];
  screenshot?: StoredShot | undefined;
  /** The counter bucket its open-session and byte counts went to. */
  bucket: number;
}
export type StoredRecord = StoredOpen | Tombstone;
export type Key = readonly (string | number)[];
export type Mutation = { key: Key; value?: unknown; expireIn?: number; blob?: boolean };

/** One atomic step being built: what it read (checked at commit) and what it will write. */
export class Tx {
  readonly checks = new Map<string, { key: Key; versionstamp: string | null }>();
  readonly writes = new Map<string, Mutation>();
  readonly sums = new Map<string, { key: Key; n: number }>();
  readonly memo = new Map<string, Promise<unknown>>();
  /** Work once the write landed (blob cleanup, overdue sessions of a device). */
  readonly after: (() => Promise<unknown>)[] = [];
  readonly finally: (() => void)[] = [];
  /** Chunks the session record had when read, so a shorter record deletes the rest. */
  recordChunks = 0;
  expired = 0;
  wake = Number.POSITIVE_INFINITY;

  check(key: Key, versionstamp: string | null): void {
    this.checks.set(JSON.stringify(key), { key, versionstamp });
  }
  set(key: Key, value: unknown, expireIn: number, blob = false): void {
    this.writes.set(JSON.stringify(key), { key, value, expireIn, blob });
  }
  delete(key: Key): void {
    this.writes.set(JSON.stringify(key), { key });
  }
  add(key: Key, n: number): void {
    const id = JSON.stringify(key);
    this.sums.set(id, { key, n: (this.sums.get(id)?.n ?? 0) + n });
  }
  once<T>(name: string, read: () => Promise<T>): Promise<T> {
    const seen = this.memo.get(name) as Promise<T> | undefined;
    if (seen) return seen;
    const p = read();
    this.memo.set(name, p);
    return p;
  }
}

/**
 * This process's admissions that a counter read may not show yet: held from the admission check
 * until the write lands, and counted by every read issued before it landed (so within one
 * process the instance-wide limits are exact; other processes' admissions in flight are not seen).
 */
export class InFlight {
  private reads = 0;
  private readonly open = new Set<number>();
  private readonly held = new Set<{ opens: number; bytes: number; landed?: number }>();
  startRead(): number {
    this.open.add(++this.reads);
    return this.reads;
  }
  endRead(read: number): void {
    this.open.delete(read);
    this.prune();
  }
  hold(opens: number, bytes: number): () => void {
    const h: { opens: number; bytes: number; landed?: number } = { opens, bytes };
    this.held.add(h);
    return () => {
      h.landed = this.reads;
      this.prune();
    };
  }
  pending(read: number): { opens: number; bytes: number } {
    let opens = 0;
    let bytes = 0;
    for (const h of this.held) {
      if (h.landed === undefined || read <= h.landed) {
        opens += h.opens;
        bytes += h.bytes;
      }
    }
    return { opens, bytes };
  }
  private prune(): void {
    const oldest = Math.min(...this.open);
    for (const h of this.held) if (h.landed !== undefined && h.landed < oldest) this.held.delete(h);
  }
}

export interface Refs {
  audio: string;
  screenshot: string;
}

/** The session as core's rules take it: copies, audio and screenshot as stubs unless `data` has them. */
export function asSession(
  stored: StoredOpen,
  data?: ReadonlyMap<string, Uint8Array>,
): {
  session: OpenSession;
  stubs: Map<AudioPiece, StoredAudio>;
  screenshot: Screenshot | undefined;
} {
  const stubs = new Map<AudioPiece, StoredAudio>();
  const audio: AudioPart[] = stored.audio.map((a) => {
    const piece: AudioPiece = {
      data: data?.get(a.ref) ?? EMPTY,
      encoding: a.encoding,
      sampleRate: a.sampleRate,
      channels: a.channels,
    };
    stubs.set(piece, a);
    return { key: a.key, order: a.order, audio: piece };
  });
  const s = stored.screenshot;
  const screenshot: Screenshot | undefined = s && {
    data: decoder.decode(data?.get(s.ref) ?? EMPTY),
    width: s.width,
    height: s.height,
  };
  const { bucket: _, ...fields } = stored;
  const session: OpenSession = {
    ...fields,
    seqs: stored.seqs.slice(),
    textAt: { ...stored.textAt },
    parts: stored.parts.map((p) => ({ ...p })),
    audio,
    screenshot,
  };
  return { session, stubs, screenshot };
}

/** Back to the stored form: the one new audio piece or screenshot becomes a blob to write. */
export function toStored(
  session: OpenSession,
  stubs: Map<AudioPiece, StoredAudio>,
  screenshotBefore: Screenshot | undefined,
  before: StoredOpen | undefined,
  refs: Refs,
  bucket: number,
): { record: StoredOpen; blobs: { ref: string; data: Uint8Array }[]; dropped: BlobRef[] } {
  const blobs: { ref: string; data: Uint8Array }[] = [];
  const dropped: BlobRef[] = [];
  const audio = session.audio.map((p): StoredAudio => {
    const kept = stubs.get(p.audio);
    if (kept) return kept;
    blobs.push({ ref: refs.audio, data: p.audio.data });
    const { encoding, sampleRate, channels } = p.audio;
    const bytes = p.audio.data.length;
    return { key: p.key, order: p.order, ref: refs.audio, bytes, encoding, sampleRate, channels };
  });
  let screenshot = before?.screenshot;
  const shot = session.screenshot;
  if (shot && shot !== screenshotBefore) {
    if (screenshot) dropped.push(screenshot);
    const data = encoder.encode(shot.data);
    blobs.push({ ref: refs.screenshot, data });
    const { width, height } = shot;
    screenshot = {
      ref: refs.screenshot,
      bytes: data.length,
      chars: shot.data.length,
      width,
      height,
    };
  }
  const { audio: _a, screenshot: _s, ...fields } = session;
  return { record: { ...fields, audio, screenshot, bucket }, blobs, dropped };
}

/** Bytes an open session holds, for the byte budget (as core's bufferedBytes counts them). */
export function buffered(stored: StoredOpen): number {
  return stored.textBytes + stored.audioBytes + (stored.screenshot?.chars ?? 0);
}

export function blobRefs(stored: StoredOpen): BlobRef[] {
  const refs: BlobRef[] = stored.audio.map((a) => ({ ref: a.ref, bytes: a.bytes }));
  if (stored.screenshot) refs.push(stored.screenshot);
  return refs;
}

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A KvU64 (a `sum`) read back as a signed number: decrements are sums that wrap. */
export function u64(value: unknown): number {
  const v = (value as { value?: unknown } | null)?.value;
  return typeof v === "bigint" ? Number(BigInt.asIntN(64, v)) : 0;
}

/** Deno KV's encoded size of a key: a tag and a terminator per string, 9 bytes per number. */
export function keyBytes(key: Key): number {
  return key.reduce<number>((n, p) => n + (typeof p === "number" ? 9 : utf8Length(p) + 2), 1);
}

export function valueBytes(value: unknown): number {
  return value instanceof Uint8Array ? value.length : 16; // our other values are numbers
}
