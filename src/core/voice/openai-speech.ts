import type { SpeechSynth } from "./ports.js";
import { postUpstream, type UpstreamOptions } from "./upstream.js";
import type { VoiceSettings } from "./voice-config.js";

/** OpenAI's `response_format: "pcm"`: raw s16le, mono, 24 kHz, no header. */
export const OPENAI_PCM_RATE = 24_000;

/** /audio/speech as PCM, streamed: each chunk is forwarded as the upstream sends it. */
export function createOpenAiSpeech(
  tts: NonNullable<VoiceSettings["tts"]>,
  options: UpstreamOptions,
): SpeechSynth {
  return {
    sampleRate: OPENAI_PCM_RATE,
    speak(text, signal) {
      const body = JSON.stringify({
        model: tts.model,
        voice: tts.voice,
        input: text,
        response_format: "pcm",
      });
      // Started now, read later: the next sentence is synthesized while this one streams.
      const started = postUpstream(
        options,
        "tts",
        tts,
        "/audio/speech",
        body,
        signal,
        "application/json",
      );
      started.catch(() => {}); // surfaced when read; the reply may stop before it is
      return wholeSamples(started);
    },
  };
}

/** The body in chunks of whole 16-bit samples: an odd byte waits for its other half. */
async function* wholeSamples(started: ReturnType<typeof postUpstream>): AsyncGenerator<Uint8Array> {
  const call = await started;
  let odd: number | undefined;
  for await (const chunk of call.chunks()) {
    let bytes = chunk;
    if (odd !== undefined) {
      bytes = new Uint8Array(chunk.byteLength + 1);
      bytes[0] = odd;
      bytes.set(chunk, 1);
      odd = undefined;
    }
    if (bytes.byteLength % 2 === 1) {
      odd = bytes[bytes.byteLength - 1];
      bytes = bytes.subarray(0, bytes.byteLength - 1);
    }
    if (bytes.byteLength > 0) yield bytes;
  }
}
