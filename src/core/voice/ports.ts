import type { AudioFile } from "./audio-file.js";

/** A chat message as OpenAI's chat completions take it. */
export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string | ChatContentPart[];
}

export type ChatContentPart =
  | { type: "text"; text: string }
  | { type: "image_url"; image_url: { url: string } };

/** A language model that streams its answer as text tokens. */
export interface ChatModel {
  stream(messages: ChatMessage[], signal: AbortSignal): AsyncIterable<string>;
}

/**
 * Text to speech: PCM s16le mono at `sampleRate`. The request starts when speak() is called
 * (so the next sentence is synthesized while this one plays); chunks come as the upstream
 * sends them, each a whole number of samples and never empty.
 */
export interface SpeechSynth {
  readonly sampleRate: number;
  speak(text: string, signal: AbortSignal): AsyncIterable<Uint8Array>;
}

/** Speech to text: the transcript of one audio file. */
export interface Transcriber {
  transcribe(audio: AudioFile, signal: AbortSignal): Promise<string>;
}
