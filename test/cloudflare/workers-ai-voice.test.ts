import { describe, expect, it } from "vitest";
import { configFromEnv } from "../../src/core/env-config.js";
import { createInProcessMemory } from "../../src/core/memory/in-process-memory.js";
import { systemClock } from "../../src/core/system-clock.js";
import { createWorkersAiWorkflow } from "../../src/runtimes/cloudflare/workers-ai.js";

function sse(tokens: string[]): ReadableStream<Uint8Array> {
  const text =
    tokens.map((t) => `data: ${JSON.stringify({ response: t })}\n\n`).join("") + "data: [DONE]\n\n";
  return new ReadableStream({
    start(c) {
      c.enqueue(new TextEncoder().encode(text));
      c.close();
    },
  });
}

// Workers AI itself cannot run here; its binding's shape can.
describe("workers-ai workflow", () => {
  it("transcribes an audio hold with whisper and answers it with the text model, in sentences", async () => {
    const calls: { model: string; input: Record<string, unknown> }[] = [];
    const ai = {
      async run(model: string, input: unknown) {
        calls.push({ model, input: input as Record<string, unknown> });
        if (model === "@cf/openai/whisper") return { text: "hello there" };
        return sse(["Hi", ".", " How can I help?"]);
      },
    };
    const voice = configFromEnv({ PTT_WORKFLOW: "workers-ai" }, "workers").core.voice;
    if (!voice) throw new Error("no voice settings");
    const workflow = createWorkersAiWorkflow(ai, voice, {
      fetch,
      memory: createInProcessMemory({ bounds: voice.memory, clock: systemClock }),
      logger: { debug() {}, info() {}, warn() {}, error() {} },
    });
    const webm = new Uint8Array([0x1a, 0x45, 0xdf, 0xa3, 1, 2, 3]);
    const parts = [];
    for await (const p of workflow(
      {
        turnId: "t",
        hardwareId: "d",
        sessionId: "s",
        text: "",
        audio: [{ data: webm, encoding: "webm_opus", sampleRate: 48000, channels: 1 }],
        chunks: 1,
        heldMs: 1,
      },
      new AbortController().signal,
    )) {
      parts.push(p);
    }
    expect(parts).toEqual([
      { kind: "text", text: "Hi. " },
      { kind: "text", text: "How can I help?" },
    ]);
    expect(calls[0]).toEqual({ model: "@cf/openai/whisper", input: { audio: [...webm] } });
    expect(calls[1]?.model).toBe("@cf/meta/llama-3.1-8b-instruct");
    expect(((calls[1]?.input.messages ?? []) as unknown[]).at(-1)).toEqual({
      role: "user",
      content: "hello there",
    });
  });
});
