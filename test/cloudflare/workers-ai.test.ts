import { describe, expect, it } from "vitest";
import { createWorkersAiWorkflow, sseTokens } from "../../src/runtimes/cloudflare/workers-ai.js";

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

  it("sends the committed text as the user's message and streams the reply as text parts", async () => {
    const calls: unknown[] = [];
    const workflow = createWorkersAiWorkflow(
      {
        async run(model, input) {
          calls.push({ model, input });
          return chunked(SSE, [5, 40]);
        },
      },
      "@cf/test/model",
    );
    const parts = [];
    const turn = {
      turnId: "t",
      hardwareId: "d",
      sessionId: "s",
      text: "hello",
      audio: [],
      chunks: 1,
      heldMs: 1,
    };
    for await (const p of workflow(turn, new AbortController().signal)) parts.push(p);
    expect(parts).toEqual([
      { kind: "text", text: "Bonjour" },
      { kind: "text", text: ", ça va" },
      { kind: "text", text: " ?" },
    ]);
    expect(calls).toMatchObject([
      {
        model: "@cf/test/model",
        input: { stream: true, messages: [{ role: "system" }, { role: "user", content: "hello" }] },
      },
    ]);
  });
});
