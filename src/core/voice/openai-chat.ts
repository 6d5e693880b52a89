import { Code, ConnectError } from "@connectrpc/connect";
import type { ChatMessage, ChatModel } from "./ports.js";
import { parseSse } from "./sse.js";
import { postUpstream, redact, type UpstreamOptions } from "./upstream.js";
import type { VoiceSettings } from "./voice-config.js";

interface CompletionChunk {
  choices?: { delta?: { content?: unknown }; finish_reason?: unknown }[];
  error?: { message?: unknown };
}

/**
 * /chat/completions with `stream: true`: the content deltas of the first choice, until
 * `data: [DONE]`. A stream that ends without [DONE] or a finish_reason was cut: UNAVAILABLE
 * (the reply would otherwise end early as if complete).
 */
export function createOpenAiChat(
  llm: VoiceSettings["llm"] & { model: string },
  options: UpstreamOptions,
): ChatModel {
  return {
    async *stream(messages: ChatMessage[], signal: AbortSignal) {
      const body: Record<string, unknown> = { model: llm.model, messages, stream: true };
      if (llm.temperature !== undefined) body.temperature = llm.temperature;
      if (llm.maxTokens !== undefined) body.max_tokens = llm.maxTokens;
      const call = await postUpstream(
        options,
        "llm",
        llm,
        "/chat/completions",
        JSON.stringify(body),
        signal,
        "application/json",
      );
      let finished = false;
      for await (const ev of parseSse(call.chunks())) {
        if (ev.data === "[DONE]") return;
        let chunk: CompletionChunk;
        try {
          chunk = JSON.parse(ev.data) as CompletionChunk;
        } catch {
          options.logger.warn("upstream sent an unreadable event", {
            upstream: "llm",
            data: redact(ev.data.slice(0, 200), llm.apiKey),
          });
          throw new ConnectError("llm: unreadable upstream response", Code.Internal);
        }
        if (chunk.error) {
          // An error after the stream started (OpenAI sends these on overload).
          const message = typeof chunk.error.message === "string" ? chunk.error.message : "";
          options.logger.warn("upstream failed mid-stream", {
            upstream: "llm",
            message: redact(message.slice(0, 500), llm.apiKey),
          });
          throw new ConnectError("llm: the upstream failed mid-stream", Code.Unavailable);
        }
        const choice = chunk.choices?.[0];
        const content = choice?.delta?.content;
        if (typeof content === "string" && content.length > 0) yield content;
        if (typeof choice?.finish_reason === "string") finished = true;
      }
      if (!finished) {
        throw new ConnectError("llm: the upstream stream ended early", Code.Unavailable);
      }
    },
  };
}
