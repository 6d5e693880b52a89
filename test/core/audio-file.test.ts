import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import type { AudioPiece } from "../../src/core/session.js";
import { joinAudio, wav } from "../../src/core/voice/audio-file.js";

const pcm = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i + seed) % 256);
const piece = (
  data: Uint8Array,
  encoding: string,
  sampleRate = 16000,
  channels = 1,
): AudioPiece => ({
  data,
  encoding,
  sampleRate,
  channels,
});

/** A WAV with a LIST chunk before fmt and data (as some recorders write). */
function wavWithList(samples: Uint8Array, rate: number): Uint8Array {
  const plain = wav(samples, rate, 1);
  const list = new Uint8Array([...new TextEncoder().encode("LIST"), 3, 0, 0, 0, 1, 2, 3, 0]);
  return new Uint8Array([...plain.subarray(0, 12), ...list, ...plain.subarray(12)]);
}

function code(fn: () => unknown): Code | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof ConnectError ? err.code : undefined;
  }
  return undefined;
}

describe("joinAudio", () => {
  it("joins PCM and WAV chunks (any chunk layout) into one WAV with the chunks' format", () => {
    const a = pcm(100, 1);
    const b = pcm(60, 2);
    const file = joinAudio([piece(a, "pcm_s16le", 48000, 1), piece(wavWithList(b, 48000), "wav")]);
    expect(file).toMatchObject({ filename: "audio.wav", mimeType: "audio/wav" });
    expect(file.data).toEqual(wav(new Uint8Array([...a, ...b]), 48000, 1));
  });

  it("recognises a WAV by its bytes whatever its declared encoding", () => {
    const file = joinAudio([piece(wav(pcm(10, 0), 8000, 1), "")]);
    expect(file.data).toEqual(wav(pcm(10, 0), 8000, 1));
  });

  it("concatenates container chunks as they are", () => {
    const file = joinAudio([piece(pcm(5, 1), "ogg_opus"), piece(pcm(5, 2), "opus")]);
    expect(file).toMatchObject({ filename: "audio.ogg", mimeType: "audio/ogg" });
    expect(file.data).toEqual(new Uint8Array([...pcm(5, 1), ...pcm(5, 2)]));
  });

  it("refuses mixed formats, unknown encodings and non-16-bit WAVs (INVALID_ARGUMENT)", () => {
    expect(
      code(() =>
        joinAudio([piece(pcm(4, 0), "pcm_s16le", 16000), piece(pcm(4, 0), "pcm_s16le", 8000)]),
      ),
    ).toBe(Code.InvalidArgument);
    expect(code(() => joinAudio([piece(pcm(4, 0), "flac")]))).toBe(Code.InvalidArgument);
    const eightBit = wav(pcm(4, 0), 8000, 1);
    eightBit[34] = 8;
    expect(code(() => joinAudio([piece(eightBit, "wav")]))).toBe(Code.InvalidArgument);
  });
});
