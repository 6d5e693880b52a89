import { concatBytes } from "../bytes.js";
import { invalidArgument } from "../errors.js";
import type { AudioPiece } from "../session.js";

/** One file for a transcription upstream, joined from a hold's audio chunks. */
export interface AudioFile {
  data: Uint8Array;
  filename: string;
  mimeType: string;
}

type Family = "pcm" | "webm" | "ogg" | "mp3";

const CONTAINERS: Record<Exclude<Family, "pcm">, { filename: string; mimeType: string }> = {
  webm: { filename: "audio.webm", mimeType: "audio/webm" },
  ogg: { filename: "audio.ogg", mimeType: "audio/ogg" },
  mp3: { filename: "audio.mp3", mimeType: "audio/mpeg" },
};

/**
 * Joins a hold's audio chunks (in seq order) into one valid file. Raw PCM (s16le) and WAV
 * chunks become one WAV with one header; MediaRecorder chunks (webm/opus, ogg/opus, mp3) are
 * one stream cut in pieces, of which only the first carries the header: they are concatenated.
 * A hold that mixes kinds, or PCM formats, is a client error (INVALID_ARGUMENT).
 */
export function joinAudio(pieces: readonly AudioPiece[]): AudioFile {
  const first = pieces[0];
  if (!first) throw invalidArgument("chunk_audio", "the hold has no audio");
  const family = familyOf(first);
  for (const p of pieces) {
    const f = familyOf(p);
    if (f !== family) {
      throw invalidArgument(
        "chunk_audio.encoding",
        `a hold cannot mix "${first.encoding}" and "${p.encoding}" audio`,
      );
    }
  }
  if (family !== "pcm") {
    return { data: concatBytes(pieces.map((p) => p.data)), ...CONTAINERS[family] };
  }
  const parts = pieces.map(pcmOf);
  const format = parts[0] as Pcm;
  for (const p of parts) {
    if (p.sampleRate !== format.sampleRate || p.channels !== format.channels) {
      throw invalidArgument(
        "chunk_audio",
        `a hold cannot mix ${format.sampleRate} Hz × ${format.channels} and ${p.sampleRate} Hz × ${p.channels} PCM`,
      );
    }
  }
  return {
    data: wav(concatBytes(parts.map((p) => p.data)), format.sampleRate, format.channels),
    filename: "audio.wav",
    mimeType: "audio/wav",
  };
}

function familyOf(p: AudioPiece): Family {
  const e = p.encoding.toLowerCase().replace(/^audio\//, "");
  if (
    isWav(p.data) ||
    ["pcm_s16le", "pcm", "s16le", "linear16", "wav", "wave", "x-wav"].includes(e)
  ) {
    return "pcm";
  }
  if (e === "webm" || e === "webm_opus" || e.startsWith("webm;")) return "webm";
  if (e === "opus" || e === "ogg" || e === "ogg_opus" || e.startsWith("ogg;")) return "ogg";
  if (e === "mp3" || e === "mpeg") return "mp3";
  throw invalidArgument(
    "chunk_audio.encoding",
    `"${p.encoding.slice(0, 40)}" is not supported; use pcm_s16le, wav, webm_opus, opus or mp3`,
  );
}

interface Pcm {
  data: Uint8Array;
  sampleRate: number;
  channels: number;
}

/** The samples of a chunk: a WAV's data chunk, or the raw bytes with the chunk's format. */
function pcmOf(p: AudioPiece): Pcm {
  if (!isWav(p.data)) {
    return { data: p.data, sampleRate: p.sampleRate || 16_000, channels: p.channels || 1 };
  }
  const view = new DataView(p.data.buffer, p.data.byteOffset, p.data.byteLength);
  let sampleRate = p.sampleRate || 16_000;
  let channels = p.channels || 1;
  let at = 12;
  while (at + 8 <= p.data.byteLength) {
    const id = ascii(p.data, at, 4);
    const size = view.getUint32(at + 4, true);
    const body = at + 8;
    if (id === "fmt " && size >= 16) {
      const format = view.getUint16(body, true);
      const bits = view.getUint16(body + 14, true);
      if ((format !== 1 && format !== 0xfffe) || bits !== 16) {
        throw invalidArgument("chunk_audio", "WAV chunks must be 16-bit PCM");
      }
      channels = view.getUint16(body + 2, true);
      sampleRate = view.getUint32(body + 4, true);
    } else if (id === "data") {
      // A streaming recorder may write 0 or 0xFFFFFFFF as the size: take what is there.
      const end = Math.min(p.data.byteLength, size > 0 ? body + size : p.data.byteLength);
      return { data: p.data.subarray(body, end), sampleRate, channels };
    }
    at = body + size + (size % 2);
  }
  throw invalidArgument("chunk_audio", "a WAV chunk has no data chunk");
}

function isWav(d: Uint8Array): boolean {
  return d.byteLength >= 12 && ascii(d, 0, 4) === "RIFF" && ascii(d, 8, 4) === "WAVE";
}

function ascii(d: Uint8Array, at: number, n: number): string {
  return String.fromCharCode(...d.subarray(at, at + n));
}

/** A canonical 44-byte header (16-bit PCM) before the samples. */
export function wav(samples: Uint8Array, sampleRate: number, channels: number): Uint8Array {
  const out = new Uint8Array(44 + samples.byteLength);
  const v = new DataView(out.buffer);
  const tag = (at: number, s: string) => {
    for (let i = 0; i < 4; i++) out[at + i] = s.charCodeAt(i);
  };
  tag(0, "RIFF");
  v.setUint32(4, 36 + samples.byteLength, true);
  tag(8, "WAVE");
  tag(12, "fmt ");
  v.setUint32(16, 16, true);
  v.setUint16(20, 1, true);
  v.setUint16(22, channels, true);
  v.setUint32(24, sampleRate, true);
  v.setUint32(28, sampleRate * channels * 2, true);
  v.setUint16(32, channels * 2, true);
  v.setUint16(34, 16, true);
  tag(36, "data");
  v.setUint32(40, samples.byteLength, true);
  out.set(samples, 44);
  return out;
}
