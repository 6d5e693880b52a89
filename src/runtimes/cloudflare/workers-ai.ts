import type { ReplyPart, Workflow } from "../../core/ports.js";

/** The slice of the Workers AI binding used here. */
export interface AiBinding {
  run(model: string, input: unknown, options?: unknown): Promise<unknown>;
}

export const DEFAULT_AI_MODEL = "@cf/meta/llama-3.1-8b-instruct";

/**
 * Replies with a Workers AI text model, streamed: the committed text is the user's
 * message, each streamed token a text_chunk. When the reply is stopped (interrupt,
 * cancel, the client gone), the model's stream is cancelled so its tokens stop too,
 * even if that happens while the model is still being asked.
 */
export function createWorkersAiWorkflow(ai: AiBinding, model = DEFAULT_AI_MODEL): Workflow {
  return async function* workersAi(turn, signal): AsyncGenerator<ReplyPart> {
    const stream = (await ai.run(model, {
      messages: [
        {
          role: "system",
          content: "You are a voice assistant. Answer briefly, in plain sentences.",
        },
        { role: "user", content: turn.text },
      ],
      stream: true,
    })) as ReadableStream<Uint8Array>;
    for await (const text of sseTokens(stream, signal)) yield { kind: "text", text };
  };
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
