import { describe, expect, it } from "vitest";
import type { ChatMessage } from "../../src/core/voice/ports.js";
import { createWorkersAiChat } from "../../src/runtimes/cloudflare/workers-ai.js";

const MESSAGES: ChatMessage[] = [{ role: "user", content: "hello" }];

/** A model's endless SSE stream: how many chunks were pulled, and why it was cancelled. */
function endlessModel() {
  const seen = { pulls: 0, cancelled: undefined as unknown, wasCancelled: false };
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      seen.pulls++;
      controller.enqueue(new TextEncoder().encode(`data: {"response":"t${seen.pulls} "}\n\n`));
    },
    cancel(reason) {
      seen.wasCancelled = true;
      seen.cancelled = reason;
    },
  });
  return { stream, seen };
}

// The model's stream must stop when the reply does: an uncancelled Workers AI stream
// keeps generating (and billing) tokens nobody reads. Regression (was a defect).
describe("Workers AI chat: the model's stream is cancelled when the reply stops", () => {
  it("the reply is stopped while the model is still being asked: its stream is cancelled on arrival", async () => {
    const { stream, seen } = endlessModel();
    let answer!: (s: ReadableStream<Uint8Array>) => void;
    const chat = createWorkersAiChat({
      run: () => new Promise((resolve) => (answer = resolve)),
    });
    const reply = new AbortController();
    const next = chat.stream(MESSAGES, reply.signal)[Symbol.asyncIterator]().next();
    reply.abort(new Error("interrupted"));
    answer(stream);
    await expect(next).rejects.toThrow("interrupted");
    expect(seen.wasCancelled).toBe(true);
    expect(String(seen.cancelled)).toContain("interrupted");
  });

  it("a consumer that stops reading (no abort) cancels the stream", async () => {
    const { stream, seen } = endlessModel();
    const chat = createWorkersAiChat({ run: async () => stream });
    const parts = [];
    for await (const part of chat.stream(MESSAGES, new AbortController().signal)) {
      parts.push(part);
      if (parts.length === 2) break;
    }
    expect(parts).toEqual(["t1 ", "t2 "]);
    expect(seen.wasCancelled).toBe(true);
  });

  it("[DONE] before the stream ends: what follows is cancelled, not left open", async () => {
    let wasCancelled = false;
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(
          new TextEncoder().encode('data: {"response":"all"}\n\ndata: [DONE]\n\n'),
        );
      },
      cancel() {
        wasCancelled = true;
      },
    });
    const chat = createWorkersAiChat({ run: async () => stream });
    const parts = [];
    for await (const part of chat.stream(MESSAGES, new AbortController().signal)) parts.push(part);
    expect(parts).toEqual(["all"]);
    expect(wasCancelled).toBe(true);
  });
});
