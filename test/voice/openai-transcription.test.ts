import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { wav } from "../../src/core/voice/audio-file.js";
import {
  ChunkMode,
  collect,
  commit,
  newDevice,
  newSession,
  streamAudio,
} from "../contract/calls.js";
import { openAiError } from "../support/fake-openai.js";
import { startVoiceServer, type VoiceServer } from "./voice-server.js";

let v: VoiceServer;
beforeAll(async () => {
  v = await startVoiceServer({ PTT_STT_MODEL: "whisper-1" });
});
afterAll(() => v.close());
beforeEach(() => {
  v.fake.transcription = { text: "what is the weather ¿qué?" };
  v.fake.chat = { tokens: ["Sunny."] };
});

const bytes = (n: number, seed: number) =>
  Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) % 256);

/** Sends audio chunks (seq order shuffled) as COLLECTs, then COMMITs. */
async function holdAudio(chunks: { data: Uint8Array; encoding: string; sampleRate?: number }[]) {
  const device = newDevice();
  const session = newSession();
  const order = chunks.map((_, i) => i).reverse();
  for (const i of order) {
    const c = chunks[i] as (typeof chunks)[number];
    const r = await streamAudio(
      v.client,
      collect(device, session, i + 1, undefined, {
        chunkMode: ChunkMode.DELTA,
        chunkAudio: {
          data: c.data,
          encoding: c.encoding,
          sampleRate: c.sampleRate ?? 0,
          channels: 1,
        },
      }),
    );
    expect(r.code).toBeUndefined();
  }
  return streamAudio(v.client, commit(device, session));
}

describe("openai workflow: audio holds", () => {
  it("joins raw PCM and WAV chunks into one WAV, transcribes it, and answers the transcript", async () => {
    const a = bytes(3200, 1);
    const b = bytes(1600, 2);
    const c = bytes(800, 3);
    const r = await holdAudio([
      { data: a, encoding: "pcm_s16le", sampleRate: 16000 },
      { data: wav(b, 16000, 1), encoding: "wav" },
      { data: c, encoding: "pcm_s16le", sampleRate: 16000 },
    ]);
    expect(r.code).toBeUndefined();
    expect(r.frames[0]).toEqual({ case: "textChunk", value: "Sunny." });
    // What was heard, for the client to show (percent-encoded UTF-8).
    expect(decodeURIComponent(r.headers.get("ptt-transcript") ?? "")).toBe(
      "what is the weather ¿qué?",
    );
    const req = v.fake.to("/v1/audio/transcriptions").at(-1);
    expect(req?.headers.authorization).toBe("Bearer sk-test-secret-key");
    expect(req?.form?.fields).toEqual({ model: "whisper-1", response_format: "json" });
    expect(req?.form?.file?.name).toBe("audio.wav");
    expect(req?.form?.file?.type).toBe("audio/wav");
    const joined = new Uint8Array([...a, ...b, ...c]);
    expect(req?.form?.file?.data).toEqual(wav(joined, 16000, 1));
    const chat = v.fake.to("/v1/chat/completions").at(-1)?.json?.messages as { content: unknown }[];
    expect(chat.at(-1)).toEqual({ role: "user", content: "what is the weather ¿qué?" });
  });

  it("concatenates MediaRecorder webm/opus chunks in seq order (the first carries the header)", async () => {
    const header = Uint8Array.from([0x1a, 0x45, 0xdf, 0xa3, ...bytes(60, 9)]);
    const parts = [header, bytes(500, 4), bytes(501, 5)];
    const r = await holdAudio(parts.map((data) => ({ data, encoding: "webm_opus" })));
    expect(r.code).toBeUndefined();
    const file = v.fake.to("/v1/audio/transcriptions").at(-1)?.form?.file;
    expect(file?.name).toBe("audio.webm");
    expect(file?.type).toBe("audio/webm");
    expect(file?.data).toEqual(new Uint8Array(parts.flatMap((p) => [...p])));
  });

  it("refuses a hold that mixes audio kinds", async () => {
    const r = await holdAudio([
      { data: bytes(100, 1), encoding: "webm_opus" },
      { data: bytes(100, 1), encoding: "pcm_s16le", sampleRate: 16000 },
    ]);
    expect(r.code).toBe(Code.InvalidArgument);
    expect(r.message).toBe(
      'chunk_audio.encoding: a hold cannot mix "webm_opus" and "pcm_s16le" audio',
    );
  });

  it("maps transcription errors like the others", async () => {
    v.fake.transcription = { text: "", error: openAiError(503, "overloaded") };
    const r = await holdAudio([{ data: bytes(100, 1), encoding: "webm_opus" }]);
    expect(r.code).toBe(Code.Unavailable);
    expect(r.message).toBe("stt: the upstream failed (HTTP 503)");
    expect(r.frames).toEqual([{ case: "errorMessage", value: r.message }]);
  });

  it("answers INVALID_ARGUMENT when no speech was recognised", async () => {
    v.fake.transcription = { text: "  " };
    const r = await holdAudio([{ data: bytes(100, 1), encoding: "webm_opus" }]);
    expect(r.code).toBe(Code.InvalidArgument);
    expect(r.message).toBe("chunk_audio: no speech was recognised in the hold");
  });

  it("answers FAILED_PRECONDITION for an audio hold when transcription is not configured", async () => {
    const plain = await startVoiceServer();
    try {
      const device = newDevice();
      const session = newSession();
      await streamAudio(
        plain.client,
        collect(device, session, 1, undefined, {
          chunkAudio: { data: bytes(10, 1), encoding: "webm_opus", sampleRate: 0, channels: 1 },
        }),
      );
      const r = await streamAudio(plain.client, commit(device, session));
      expect(r.code).toBe(Code.FailedPrecondition);
      expect(r.message).toMatch(
        /^chunk_audio: this server does not transcribe audio \(PTT_STT_MODEL/,
      );
      expect(plain.fake.requests).toEqual([]);
    } finally {
      await plain.close();
    }
  });
});
