import { Buffer } from "node:buffer";
import type { AudioPart, OpenSession, SessionRecord } from "../../core/session.js";

/**
 * A session record as Redis keeps it: JSON without the payloads, and the payloads in a hash of
 * their own beside it (field: an audio part's `order`, its bytes; "s": the screenshot's data),
 * which a write only adds to. Before, the record's JSON carried every audio piece in base64
 * and every chunk wrote it all again: a 30 s hold of 16 kHz PCM in 100 ms chunks sent 199 MB
 * to Redis, its last chunks 1.3 MB each. Records stored that way are still read.
 */

/** A part as stored: its audio without the bytes (in the payload hash under its order). */
interface StoredAudioPart extends Omit<AudioPart, "audio"> {
  audio: Omit<AudioPart["audio"], "data"> & { data?: string };
}

/** The payload hash's field of the screenshot's data. */
const SCREENSHOT = "s";

export interface EncodedRecord {
  json: string;
  /** Payload hash fields this write adds: (field, bytes or text) pairs. */
  payloads: (string | Buffer)[];
  /** Whether the session has a payload hash (its TTL follows the record's). */
  hasPayloads: boolean;
}

/**
 * `record` as stored, and the payloads it adds to `before` (the record the write replaces):
 * audio parts placed since (each accepted chunk takes the next order, so they are those past
 * `before.chunks`) and a screenshot that is not `before`'s.
 */
export function encodeRecord(
  record: SessionRecord,
  before: SessionRecord | undefined,
): EncodedRecord {
  if (record.state !== "open")
    return { json: JSON.stringify(record), payloads: [], hasPayloads: false };
  const known = before?.state === "open" ? before : undefined;
  const placed = known?.chunks ?? 0;
  const payloads: (string | Buffer)[] = [];
  const audio: StoredAudioPart[] = record.audio.map((part) => {
    const { data, ...rest } = part.audio;
    if (part.order > placed) {
      payloads.push(String(part.order), Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    }
    return { key: part.key, order: part.order, audio: rest };
  });
  let screenshot: OpenSession["screenshot"] | { width?: number; height?: number };
  if (record.screenshot) {
    const { data, ...rest } = record.screenshot;
    if (record.screenshot !== known?.screenshot) payloads.push(SCREENSHOT, data);
    screenshot = rest;
  }
  return {
    json: JSON.stringify({ ...record, audio, screenshot }),
    payloads,
    hasPayloads: audio.length > 0 || screenshot !== undefined,
  };
}

export interface DecodedRecord {
  record: SessionRecord;
  /**
   * Its payloads were in the JSON (stored by an earlier version): all of them are in `record`,
   * none in the payload hash yet, so the next write must add them all.
   */
  inline: boolean;
}

/**
 * The record from its JSON and, when read (`payloads`: the hash's HGETALL, field and value
 * pairs), its payloads; without them audio pieces and the screenshot come back empty (their
 * sizes are in the record: audioBytes, screenshotBytes).
 */
export function decodeRecord(json: string, payloads?: (string | Buffer)[]): DecodedRecord {
  const record = JSON.parse(json) as SessionRecord;
  if (record.state !== "open") return { record, inline: false };
  let inline = false;
  const byField = new Map<string, string | Buffer>();
  for (let i = 0; payloads && i < payloads.length; i += 2) {
    byField.set(String(payloads[i]), payloads[i + 1] as string | Buffer);
  }
  const stored = record.audio as unknown as StoredAudioPart[];
  const audio: AudioPart[] = stored.map((part) => {
    const base64 = part.audio.data; // in the JSON: stored by an earlier version
    if (base64 !== undefined) inline = true;
    const bytes = base64 === undefined ? byField.get(String(part.order)) : undefined;
    const data =
      base64 !== undefined
        ? new Uint8Array(Buffer.from(base64, "base64"))
        : bytes !== undefined
          ? new Uint8Array(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes))
          : new Uint8Array(0);
    return { key: part.key, order: part.order, audio: { ...part.audio, data } };
  });
  const shot = record.screenshot;
  if (shot && shot.data === undefined) shot.data = String(byField.get(SCREENSHOT) ?? "");
  else if (shot) inline = true;
  return { record: { ...record, audio }, inline };
}

/** Whether an open record's pieces carry their bytes only when its payloads were read. */
export function hasPayloads(record: SessionRecord | undefined): boolean {
  return record?.state === "open" && (record.audio.length > 0 || record.screenshot !== undefined);
}
