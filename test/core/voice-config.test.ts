import { describe, expect, it } from "vitest";
import { configFromEnv } from "../../src/core/env-config.js";

describe("configFromEnv: PTT_WORKFLOW and the voice workflow", () => {
  it("is the echo workflow by default, with no voice settings", () => {
    const config = configFromEnv({});
    expect(config.workflow).toBe("echo");
    expect(config.core.voice).toBeUndefined();
  });

  it("rejects an unknown workflow, and workers-ai outside Workers", () => {
    expect(() => configFromEnv({ PTT_WORKFLOW: "gpt" })).toThrow(
      'PTT_WORKFLOW: must be one of echo, openai, workers-ai; got "gpt"',
    );
    expect(() => configFromEnv({ PTT_WORKFLOW: "workers-ai" })).toThrow(
      /PTT_WORKFLOW: "workers-ai" runs on Cloudflare Workers only/,
    );
    expect(configFromEnv({ PTT_WORKFLOW: "workers-ai" }, "workers").workflow).toBe("workers-ai");
  });

  it("needs PTT_LLM_MODEL with openai", () => {
    expect(() => configFromEnv({ PTT_WORKFLOW: "openai" })).toThrow(
      /^PTT_LLM_MODEL: required with PTT_WORKFLOW=openai/,
    );
  });

  it("reads every setting, with OpenAI's base URL and the defaults", () => {
    const config = configFromEnv({
      PTT_WORKFLOW: "openai",
      PTT_LLM_MODEL: "gpt-4o-mini",
      OPENAI_API_KEY: "sk-test",
    });
    expect(config.core.voice).toEqual({
      workflow: "openai",
      llm: {
        baseUrl: "https://api.openai.com/v1",
        apiKey: "sk-test",
        model: "gpt-4o-mini",
        systemPrompt: expect.stringMatching(/voice assistant/),
        temperature: undefined,
        maxTokens: undefined,
      },
      timeoutMs: 30_000,
      tts: undefined,
      stt: undefined,
      memory: { maxTurns: 8, maxBytes: 32768, ttlMs: 3_600_000 },
    });
    const full = configFromEnv({
      PTT_WORKFLOW: "openai",
      OPENAI_BASE_URL: "http://127.0.0.1:11434/v1/",
      PTT_LLM_MODEL: "llama3.2",
      PTT_SYSTEM_PROMPT: "Be terse.",
      PTT_LLM_TEMPERATURE: "0.7",
      PTT_LLM_MAX_TOKENS: "200",
      PTT_LLM_TIMEOUT_MS: "5000",
      PTT_TTS_MODEL: "tts-1",
      PTT_TTS_VOICE: "nova",
      PTT_TTS_BASE_URL: "http://127.0.0.1:8880/v1",
      PTT_STT_MODEL: "whisper-1",
      PTT_MEMORY_TURNS: "0",
      PTT_MEMORY_MAX_BYTES: "1000",
      PTT_MEMORY_TTL_MS: "60000",
    }).core.voice;
    expect(full).toMatchObject({
      llm: {
        baseUrl: "http://127.0.0.1:11434/v1",
        apiKey: undefined,
        model: "llama3.2",
        systemPrompt: "Be terse.",
        temperature: 0.7,
        maxTokens: 200,
      },
      timeoutMs: 5000,
      tts: { baseUrl: "http://127.0.0.1:8880/v1", model: "tts-1", voice: "nova" },
      // The STT base URL defaults to OPENAI_BASE_URL.
      stt: { baseUrl: "http://127.0.0.1:11434/v1", model: "whisper-1" },
      memory: { maxTurns: 0, maxBytes: 1000, ttlMs: 60000 },
    });
  });

  it("names the variable of a bad value", () => {
    const base = { PTT_WORKFLOW: "openai", PTT_LLM_MODEL: "m" };
    expect(() => configFromEnv({ ...base, PTT_LLM_TEMPERATURE: "3" })).toThrow(
      /^PTT_LLM_TEMPERATURE: must be a number from 0 to 2/,
    );
    expect(() => configFromEnv({ ...base, PTT_LLM_TIMEOUT_MS: "0" })).toThrow(
      /^PTT_LLM_TIMEOUT_MS: must be an integer >= 1/,
    );
    expect(() => configFromEnv({ ...base, PTT_MEMORY_TURNS: "-1" })).toThrow(/^PTT_MEMORY_TURNS/);
    expect(() => configFromEnv({ ...base, OPENAI_BASE_URL: "localhost:11434" })).toThrow(
      /^OPENAI_BASE_URL: must be an http\(s\) URL/,
    );
    expect(() => configFromEnv({ ...base, PTT_TTS_BASE_URL: "ftp://x/v1" })).toThrow(
      /^PTT_TTS_BASE_URL: must be an http\(s\) URL; got a ftp: URL/,
    );
    expect(() => configFromEnv({ ...base, PTT_LLM_MODLE: "m" })).toThrow(
      /^PTT_LLM_MODLE: unknown setting/,
    );
  });

  it("never echoes a base URL (it may carry credentials)", () => {
    expect(() =>
      configFromEnv({ PTT_WORKFLOW: "openai", PTT_LLM_MODEL: "m", OPENAI_BASE_URL: "sk-secret" }),
    ).toThrow(expect.objectContaining({ message: expect.not.stringContaining("sk-secret") }));
  });
});
