import { Buffer } from "node:buffer";
import type { AudioPart, OpenSession, SessionRecord } from "../../core/session.js";

/**
 * A session record as one Redis string: JSON, with each audio piece's bytes in base64 (the
 * only binary a record holds). Tombstones are a few dozen bytes; an open session is its buffer.
 */

interface StoredAudioPart extends Omit<AudioPart, "audio"> {
  audio: Omit<AudioPart["audio"], "data"> & { data: string };
}

export function encodeRecord(record: SessionRecord): string {
  if (record.state !== "open" || record.audio.length === 0) return JSON.stringify(record);
  const audio: StoredAudioPart[] = record.audio.map((part) => ({
    ...part,
    audio: { ...part.audio, data: Buffer.from(part.audio.data).toString("base64") },
  }));
  return JSON.stringify({ ...record, audio });
}

export function decodeRecord(raw: string): SessionRecord {
  const record = JSON.parse(raw) as SessionRecord;
  if (record.state !== "open" || record.audio.length === 0) return record;
  const stored = record.audio as unknown as StoredAudioPart[];
  const audio: AudioPart[] = stored.map((part) => ({
    ...part,
    audio: { ...part.audio, data: new Uint8Array(Buffer.from(part.audio.data, "base64")) },
  }));
  return { ...(record as OpenSession), audio };
}
