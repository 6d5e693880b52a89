import type { Workflow } from "../../core/ports.js";
import { createOpenAiWorkflow, type VoiceDeps } from "../../core/voice/openai-workflow.js";
import type { ChatMessage, ChatModel, Transcriber } from "../../core/voice/ports.js";
import type { VoiceSettings } from "../../core/voice/voice-config.js";

/** The slice of the Workers AI binding used here. */
export interface AiBinding {
  run(model: string, input: unknown, options?: unknown): Promise<unknown>;
}

export const DEFAULT_AI_MODEL = "@cf/meta/llama-3.1-8b-instruct";
export const DEFAULT_WHISPER_MODEL = "@cf/openai/whisper";

/**
 * PTT_WORKFLOW=workers-ai: the voice workflow (sentences, memory, speech through PTT_TTS_* when
 * set) with a Workers AI text model for the reply and Workers AI's whisper for audio holds.
 */
export function createWorkersAiWorkflow(
  ai: AiBinding,
  voice: VoiceSettings,
  deps: Omit<VoiceDeps, "chat" | "transcriber">,
): Workflow {
  return createOpenAiWorkflow(voice, {
    ...deps,
    chat: createWorkersAiChat(ai, voice.llm.model),
    transcriber: createWorkersAiTranscriber(ai, voice.stt?.model),
  });
}

/**
 * A Workers AI text model, streamed. When the reply is stopped (interrupt, cancel, the client
 * gone), the model's stream is cancelled so its tokens stop too, even if that happens while
 * the model is still being asked.
 */
export function createWorkersAiChat(ai: AiBinding, model = DEFAULT_AI_MODEL): ChatModel {
  return {
    async *stream(messages, signal) {
      const stream = (await ai.run(model, {
        // Workers AI text models take string contents: an image part is left out.
        messages: messages.map((m) => ({ role: m.role, content: textOf(m.content) })),
        stream: true,
      })) as ReadableStream<Uint8Array>;
      yield* sseTokens(stream, signal);
    },
  };
}

/** Workers AI's whisper: the audio file's bytes in, `text` out. */
export function createWorkersAiTranscriber(
  ai: AiBinding,
  model = DEFAULT_WHISPER_MODEL,
): Transcriber {
  return {
    async transcribe(audio, signal) {
      signal.throwIfAborted();
      const out = (await ai.run(model, { audio: [...audio.data] })) as { text?: unknown };
      signal.throwIfAborted();
      if (typeof out?.text !== "string") throw new Error("whisper answered without text");
      return out.text;
    },
  };
}

function textOf(content: ChatMessage["content"]): string {
  if (typeof content === "string") return content;
  return content.map((p) => (p.type === "text" ? p.text : "")).join("");
}

/**
 * The `response` tokens of a Workers AI server-sent-event stream, until `data: [DONE]`.
 * Unless the stream ended, it is cancelled on the way out (aborted before or while
 * reading, [DONE] before the end, or the consumer stopped early).
 */
export async function* sseTokens(
  stream: ReadableStream<Uint8Array>,
  signal: AbortSignal,
): AsyncGenerator<string> {
  const reader = stream.getReader();
  let ended = false;
  const cancel = () => {
    if (!ended) reader.cancel(signal.reason).catch(() => {});
    ended = true;
  };
  signal.addEventListener("abort", cancel, { once: true });
  const decoder = new TextDecoder();
  let buffered = "";
  try {
    for (;;) {
      // Also covers a signal that aborted before we got here (while the model was asked).
      signal.throwIfAborted();
      const { done, value } = await reader.read();
      // A stream cancelled by an interrupt also ends "done": that is not a finished reply.
      signal.throwIfAborted();
      if (done) {
        ended = true;
        return;
      }
      buffered += decoder.decode(value, { stream: true });
      let end = buffered.indexOf("\n");
      while (end >= 0) {
        const line = buffered.slice(0, end).trim();
        buffered = buffered.slice(end + 1);
        end = buffered.indexOf("\n");
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        const token = (JSON.parse(data) as { response?: unknown }).response;
        if (typeof token === "string" && token.length > 0) yield token;
      }
    }
  } finally {
    signal.removeEventListener("abort", cancel);
    cancel();
    reader.releaseLock();
  }
}
