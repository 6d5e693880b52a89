import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  clientFor,
  commit,
  newDevice,
  newSession,
  type StreamingClient,
  streamAudio,
} from "../contract/calls.js";
import { TEST_LIMITS } from "../contract/target.js";
import { type FakeOpenAi, pcmFor, startFakeOpenAi } from "../support/fake-openai.js";
import { spawnRuntime } from "../support/spawn-runtime.js";
import { spawnWrangler } from "../support/spawn-wrangler.js";
import { until } from "../voice/voice-server.js";

// The openai workflow on every other runtime, against the same loopback upstream: one turn with
// speech, the next turn sent with the first remembered, and an interrupt that closes the
// upstream request. (Node runs the full voice suite in test/voice and the contract suite.)

let fake: FakeOpenAi;
beforeAll(async () => {
  fake = await startFakeOpenAi();
});
afterAll(() => fake.close());

function envFor(): Record<string, string> {
  return {
    PTT_WORKFLOW: "openai",
    OPENAI_BASE_URL: fake.baseUrl,
    OPENAI_API_KEY: "sk-runtime-test",
    PTT_LLM_MODEL: "gpt-4o-mini",
    PTT_TTS_MODEL: "tts-1",
  };
}

function connectClient(url: string): StreamingClient {
  return clientFor({
    name: "voice",
    transport: createConnectTransport({ baseUrl: url, httpVersion: "1.1" }),
    limits: TEST_LIMITS,
    echoDelayMs: 0,
  });
}

/** Returns the device, whose memory holds "hi" → "Hello there." and "again" → "Still talking. ". */
async function voiceScenario(client: StreamingClient): Promise<string> {
  const device = newDevice();
  fake.chat = { tokens: ["Hello", " there."] };
  fake.speech = { chunks: (input) => pcmFor(input, 500) };
  const first = await streamAudio(client, commit(device, newSession(), { prompt: "hi" }));
  expect(first.code).toBeUndefined();
  expect(first.frames[0]).toEqual({ case: "textChunk", value: "Hello there." });
  const audio = first.frames.filter((f) => f.case === "audioChunk").map((f) => f.value);
  const bytes = audio.reduce((n, a) => n + a.audioData.length, 0);
  expect(bytes).toBe(pcmFor("Hello there.").reduce((n, c) => n + c.length, 0));
  expect(audio[0]).toMatchObject({ dtype: "int16", sampleRate: 24000, channels: 1 });
  expect(first.frames.at(-1)).toEqual({ case: "endMessage", value: "RESPONSE_COMPLETED" });

  fake.chat = { tokens: ["Still ", "talking. ", "More"], stallAfter: 2 };
  const received: string[] = [];
  const call = streamAudio(client, commit(device, newSession(), { prompt: "again" }), {
    onFrame: (f) => void (f.case === "textChunk" && received.push(f.value)),
  });
  await until(() => received.length > 0, "the second reply's first text", 20_000);
  const messages = fake.to("/v1/chat/completions").at(-1)?.json?.messages;
  expect(messages).toEqual([
    { role: "system", content: expect.any(String) },
    { role: "user", content: "hi" },
    { role: "assistant", content: "Hello there." },
    { role: "user", content: "again" },
  ]);
  const req = fake.to("/v1/chat/completions").at(-1);
  await client.interruptSession({ hardwareId: device });
  expect(await req?.ended).toBe("disconnected");
  expect((await call).code).toBe(Code.Canceled);
  return device;
}

describe.each(["bun", "deno"] as const)("openai workflow on %s", (runtime) => {
  it("speaks, remembers, and closes the upstream on interrupt", async () => {
    const env = envFor();
    // Deno: the memory in Deno KV (beside the sessions).
    if (runtime === "deno")
      Object.assign(env, { PTT_STORE: "deno-kv", PTT_DENO_KV_PATH: ":memory:" });
    const server = await spawnRuntime(runtime, env);
    try {
      await voiceScenario(connectClient(server.url));
    } finally {
      await server.stop();
    }
  }, 60_000);
});

describe("openai workflow on Workers (wrangler dev)", () => {
  let state: string | undefined;
  afterAll(async () => {
    if (state) await rm(state, { recursive: true, force: true });
  });

  it("speaks, remembers (in the device object's storage, across a restart), closes the upstream on interrupt", async () => {
    state = await mkdtemp(join(tmpdir(), "ptt-wrangler-voice-"));
    let worker = await spawnWrangler(envFor(), state);
    try {
      const device = await voiceScenario(connectClient(worker.url));
      // The memory is in the device object's storage: it survives a restart of the runtime.
      await worker.stop();
      worker = await spawnWrangler(envFor(), state);
      fake.chat = { tokens: ["Yes."] };
      const r = await streamAudio(
        connectClient(worker.url),
        commit(device, newSession(), { prompt: "after restart" }),
      );
      expect(r.code).toBeUndefined();
      expect(fake.to("/v1/chat/completions").at(-1)?.json?.messages).toEqual([
        { role: "system", content: expect.any(String) },
        { role: "user", content: "hi" },
        { role: "assistant", content: "Hello there." },
        { role: "user", content: "again" },
        { role: "assistant", content: "Still talking. " },
        { role: "user", content: "after restart" },
      ]);
    } finally {
      await worker.stop();
    }
  }, 180_000);
});
