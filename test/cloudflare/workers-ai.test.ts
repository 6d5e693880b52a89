import { describe, expect, it } from "vitest";
import { createWorkersAiChat, sseTokens } from "../../src/runtimes/cloudflare/workers-ai.js";

/** A byte stream cut at the given offsets, as a network would deliver it. */
function chunked(text: string, cuts: number[]): ReadableStream<Uint8Array> {
  const bytes = new TextEncoder().encode(text);
  const points = [0, ...cuts.filter((c) => c > 0 && c < bytes.length), bytes.length];
  return new ReadableStream({
    start(controller) {
      for (let i = 0; i + 1 < points.length; i++) {
        controller.enqueue(bytes.slice(points[i], points[i + 1]));
      }
      controller.close();
    },
  });
}

const SSE =
  'data: {"response":"Bonjour"}\n\n' +
  'data: {"response":", ça va"}\n\n' +
  'data: {"response":""}\n\n' +
  'data: {"response":" ?"}\n\n' +
  "data: [DONE]\n\n" +
  'data: {"response":"after done"}\n\n';

async function collect(stream: ReadableStream<Uint8Array>, signal = new AbortController().signal) {
  const out: string[] = [];
  for await (const t of sseTokens(stream, signal)) out.push(t);
  return out;
}

// Workers AI itself cannot run here; its stream format can.
describe("Workers AI workflow: server-sent tokens", () => {
  it("yields each non-empty token until [DONE]", async () => {
    expect(await collect(chunked(SSE, []))).toEqual(["Bonjour", ", ça va", " ?"]);
  });

  it("is unaffected by where the network cuts the bytes (even inside a UTF-8 character)", async () => {
    const bytes = new TextEncoder().encode(SSE).length;
    for (let cut = 1; cut < bytes; cut += 7) {
      expect(await collect(chunked(SSE, [cut, cut + 3, cut + 11]))).toEqual([
        "Bonjour",
        ", ça va",
        " ?",
      ]);
    }
  });

  it("stops reading and cancels the model's stream when the reply is interrupted", async () => {
    let cancelled: unknown;
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode('data: {"response":"one"}\n\n'));
      },
      cancel(reason) {
        cancelled = reason;
      },
    });
    const ac = new AbortController();
    const seen: string[] = [];
    const run = (async () => {
      for await (const t of sseTokens(stream, ac.signal)) {
        seen.push(t);
        ac.abort(new Error("interrupted"));
      }
    })();
    await expect(run).rejects.toThrow();
    expect(seen).toEqual(["one"]);
    expect(String(cancelled)).toContain("interrupted");
  });

  it("sends the messages (text contents only) and streams the reply's tokens", async () => {
    const calls: unknown[] = [];
    const chat = createWorkersAiChat(
      {
        async run(model, input) {
          calls.push({ model, input });
          return chunked(SSE, [5, 40]);
        },
      },
      "@cf/test/model",
    );
    const tokens = [];
    const messages = [
      { role: "system" as const, content: "S" },
      {
        role: "user" as const,
        content: [
          { type: "text" as const, text: "hello" },
          { type: "image_url" as const, image_url: { url: "data:image/png;base64,AA" } },
        ],
      },
    ];
    for await (const t of chat.stream(messages, new AbortController().signal)) tokens.push(t);
    expect(tokens).toEqual(["Bonjour", ", ça va", " ?"]);
    expect(calls).toEqual([
      {
        model: "@cf/test/model",
        input: {
          stream: true,
          messages: [
            { role: "system", content: "S" },
            { role: "user", content: "hello" },
          ],
        },
      },
    ]);
  });
});
