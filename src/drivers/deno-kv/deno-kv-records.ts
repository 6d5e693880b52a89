import { concatBytes } from "../../core/bytes.js";
import type {
  AudioPart,
  AudioPiece,
  OpenSession,
  Screenshot,
  SessionRecord,
  Tombstone,
} from "../../core/session.js";

/**
 * A session record as Deno KV keeps it (deno-kv-driver.ts): JSON in parts of at most 60 KiB,
 * the open session minus its audio and screenshot, which are blobs under their own keys
 * (written once, named by a random ref) that only a COMMIT reads back.
 */

export const PART_BYTES = 60 * 1024;
const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface BlobRef {
  ref: string;
  bytes: number;
}
interface StoredAudio extends BlobRef, Omit<AudioPiece, "data"> {
  key: number;
  order: number;
}
interface StoredShot extends BlobRef, Omit<Screenshot, "data"> {}
interface StoredOpen extends Omit<OpenSession, "audio" | "screenshot"> {
  audio: StoredAudio[];
  screenshot?: StoredShot | undefined;
}
export type StoredRecord = StoredOpen | Tombstone;

/** A blob to write: its ref and its bytes. */
export interface Blob {
  ref: string;
  data: Uint8Array;
}

/** The record handed to the engine, and which stored blob each of its pieces is. */
export interface Unpacked {
  record: SessionRecord;
  known: Map<AudioPiece | Screenshot, StoredAudio | StoredShot>;
  refs: BlobRef[];
}

export function encodeParts(record: StoredRecord): Uint8Array[] {
  const bytes = encoder.encode(JSON.stringify(record));
  const parts: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; at += PART_BYTES) {
    parts.push(bytes.subarray(at, at + PART_BYTES));
  }
  return parts;
}

/** undefined when the parts do not make a record (Deno KV reclaimed some: it was forgotten). */
export function decodeParts(parts: unknown[]): StoredRecord | undefined {
  if (parts.length === 0 || !parts.every((p) => p instanceof Uint8Array)) return undefined;
  try {
    return JSON.parse(decoder.decode(concatBytes(parts as Uint8Array[]))) as StoredRecord;
  } catch {
    return undefined;
  }
}

/** Core's record from the stored one: pieces carry their bytes when `blobs` has them, else none. */
export function unpack(stored: StoredRecord, blobs?: ReadonlyMap<string, Uint8Array>): Unpacked {
  const known: Unpacked["known"] = new Map();
  if (stored.state !== "open") return { record: stored, known, refs: [] };
  const audio = stored.audio.map((a): AudioPart => {
    const { key, order, ref: _r, bytes: _b, ...format } = a;
    const piece: AudioPiece = { ...format, data: blobs?.get(a.ref) ?? EMPTY };
    known.set(piece, a);
    return { key, order, audio: piece };
  });
  let screenshot: Screenshot | undefined;
  if (stored.screenshot) {
    const { ref, bytes: _b, ...size } = stored.screenshot;
    const data = blobs?.get(ref);
    screenshot = { ...size, data: data ? decoder.decode(data) : "" };
    known.set(screenshot, stored.screenshot);
  }
  const refs = [...stored.audio, ...(stored.screenshot ? [stored.screenshot] : [])];
  // Records of the store before the engine counted screenshots in `chars`.
  const old = (stored.screenshot as { chars?: number } | undefined)?.chars ?? 0;
  const screenshotBytes = stored.screenshotBytes ?? old;
  return { record: { ...stored, audio, screenshot, screenshotBytes }, known, refs };
}

/**
 * The stored form of what the engine wrote: kept pieces keep their blobs, new ones get a
 * blob (`refOf` names it: the same ref on every attempt of a step, so staged blobs are reused).
 */
export function pack(
  record: SessionRecord,
  known: Unpacked["known"],
  refOf: (piece: object) => string,
): { stored: StoredRecord; blobs: Blob[]; refs: BlobRef[] } {
  if (record.state !== "open") return { stored: record, blobs: [], refs: [] };
  const blobs: Blob[] = [];
  const audio = record.audio.map(({ key, order, audio: piece }): StoredAudio => {
    const kept = known.get(piece) as StoredAudio | undefined;
    if (kept) return kept;
    const { data, ...format } = piece;
    const ref = refOf(piece);
    blobs.push({ ref, data });
    return { key, order, ref, bytes: data.length, ...format };
  });
  let screenshot: StoredShot | undefined;
  if (record.screenshot) {
    screenshot = known.get(record.screenshot) as StoredShot | undefined;
    if (!screenshot) {
      const { data: text, ...size } = record.screenshot;
      const data = encoder.encode(text);
      const ref = refOf(record.screenshot);
      blobs.push({ ref, data });
      screenshot = { ...size, ref, bytes: data.length };
    }
  }
  const refs = [...audio, ...(screenshot ? [screenshot] : [])];
  return { stored: { ...record, audio, screenshot }, blobs, refs };
}
