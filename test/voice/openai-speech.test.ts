import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { commit, newDevice, newSession, streamAudio } from "../contract/calls.js";
import { openAiError, pcmFor } from "../support/fake-openai.js";
import { startVoiceServer, until, type VoiceServer } from "./voice-server.js";

let v: VoiceServer;
beforeAll(async () => {
  v = await startVoiceServer({ PTT_TTS_MODEL: "tts-1", PTT_TTS_VOICE: "nova" });
});
afterAll(() => v.close());
beforeEach(() => {
  v.fake.speech = { chunks: (input) => pcmFor(input) };
});

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

describe("openai workflow: speech", () => {
  it("follows each sentence's text with its audio, byte for byte what the upstream sent", async () => {
    v.fake.chat = { tokens: ["Hi. ", "This is a longer second sentence", ", and it goes on."] };
    // Odd-sized chunks: the server forwards whole 16-bit samples only, never an empty chunk.
    v.fake.speech = { chunks: (input) => pcmFor(input, 333) };
    const r = await streamAudio(v.client, commit(newDevice(), newSession(), { prompt: "x" }));
    expect(r.code).toBeUndefined();
    const sentences = ["Hi. ", "This is a longer second sentence, and it goes on."];
    const got: { text: string; audio: Uint8Array[] }[] = [];
    for (const f of r.frames) {
      if (f.case === "textChunk") got.push({ text: f.value, audio: [] });
      else if (f.case === "audioChunk") {
        const a = f.value;
        expect(a.audioData.length).toBeGreaterThan(0);
        expect(a.audioData.length % 2).toBe(0);
        expect(a).toMatchObject({ dtype: "int16", sampleRate: 24000, channels: 1 });
        expect(a.shape).toEqual([a.audioData.length / 2, 1]);
        got.at(-1)?.audio.push(a.audioData);
      }
    }
    expect(got.map((g) => g.text)).toEqual(sentences);
    for (const [i, g] of got.entries()) {
      expect(concat(g.audio)).toEqual(concat(pcmFor(sentences[i] as string)));
    }
    const speech = v.fake.to("/v1/audio/speech").slice(-2);
    expect(speech.map((s) => s.json)).toEqual(
      sentences.map((input) => ({ model: "tts-1", voice: "nova", input, response_format: "pcm" })),
    );
    expect(speech[0]?.headers.authorization).toBe("Bearer sk-test-secret-key");
  });

  it("streams audio as it arrives and synthesizes the next sentence while one plays", async () => {
    v.fake.chat = { tokens: ["First sentence. ", "The second sentence is here and it is long. "] };
    // The first sentence's audio stalls after one chunk: the second is requested meanwhile.
    v.fake.speech = (req) =>
      String(req.json?.input).startsWith("First")
        ? { chunks: (input) => pcmFor(input), stallAfter: 1 }
        : { chunks: (input) => pcmFor(input) };
    const device = newDevice();
    const frames: string[] = [];
    const call = streamAudio(v.client, commit(device, newSession(), { prompt: "x" }), {
      onFrame: (f) => void frames.push(f.case ?? ""),
    });
    await until(() => frames.includes("audioChunk"), "the first audio chunk");
    await until(() => v.fake.to("/v1/audio/speech").length >= 2, "the second speech request");
    // Still inside the first sentence: its text and one audio chunk, nothing of the second.
    expect(frames).toEqual(["textChunk", "audioChunk"]);
    await v.client.interruptSession({ hardwareId: device });
    const r = await call;
    expect(r.code).toBe(Code.Canceled);
    const [first, second] = v.fake.to("/v1/audio/speech").slice(-2);
    expect(await first?.ended).toBe("disconnected");
    expect(await second?.ended).not.toBeUndefined();
  });

  it("stops the speech request when the reply is interrupted mid-sentence", async () => {
    v.fake.chat = { tokens: ["Speak this. "] };
    v.fake.speech = { chunks: (input) => pcmFor(input), stallAfter: 1 };
    const device = newDevice();
    let audio = 0;
    const call = streamAudio(v.client, commit(device, newSession(), { prompt: "x" }), {
      onFrame: (f) => {
        if (f.case === "audioChunk") audio++;
      },
    });
    await until(() => audio > 0, "audio");
    const stoppedAt = performance.now();
    await v.client.interruptSession({ hardwareId: device });
    const req = v.fake.to("/v1/audio/speech").at(-1);
    expect(await req?.ended).toBe("disconnected");
    expect((req?.disconnectedAt ?? Infinity) - stoppedAt).toBeLessThan(1000);
    expect((await call).code).toBe(Code.Canceled);
  });

  it("maps a speech error after text went out to the status alone", async () => {
    v.fake.chat = { tokens: ["Hello there. "] };
    v.fake.speech = {
      chunks: () => [],
      error: openAiError(429, "Rate limit reached", { "retry-after-ms": "1500" }),
    };
    const r = await streamAudio(v.client, commit(newDevice(), newSession(), { prompt: "x" }));
    expect(r.frames).toEqual([{ case: "textChunk", value: "Hello there. " }]);
    expect(r.code).toBe(Code.ResourceExhausted);
    expect(r.message).toBe("tts: the upstream is rate limited (HTTP 429); retry in 2 s");
    expect(r.trailers.get("ptt-retry-after-ms")).toBe("1500");
  });

  it("does not synthesize whitespace-only pieces", async () => {
    v.fake.chat = { tokens: ["Yes. ", "\n\n"] };
    const before = v.fake.to("/v1/audio/speech").length;
    const r = await streamAudio(v.client, commit(newDevice(), newSession(), { prompt: "x" }));
    expect(r.code).toBeUndefined();
    expect(v.fake.to("/v1/audio/speech").length - before).toBe(1);
  });
});
