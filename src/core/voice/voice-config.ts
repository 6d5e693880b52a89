import { DEFAULT_MEMORY_BOUNDS, type MemoryBounds } from "../memory/turns.js";

type Env = Readonly<Record<string, string | undefined>>;

export type WorkflowName = "echo" | "openai" | "workers-ai";

export const DEFAULT_BASE_URL = "https://api.openai.com/v1";
export const DEFAULT_SYSTEM_PROMPT =
  "You are a voice assistant. Answer briefly, in plain spoken sentences, without markdown.";
export const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_TTS_VOICE = "alloy";

/** An OpenAI-compatible endpoint: base URL (no trailing slash) and its key, if any. */
export interface Endpoint {
  baseUrl: string;
  apiKey?: string | undefined;
}

/** The voice workflow's settings (PTT_WORKFLOW=openai or workers-ai), from the environment. */
export interface VoiceSettings {
  workflow: "openai" | "workers-ai";
  llm: Endpoint & {
    /** openai: required; workers-ai: a Workers AI model name (a default when unset). */
    model: string | undefined;
    systemPrompt: string;
    temperature?: number | undefined;
    maxTokens?: number | undefined;
  };
  /** Longest wait for an upstream: for its response, then between two of its chunks. */
  timeoutMs: number;
  /** Speech is on when PTT_TTS_MODEL is set. */
  tts?: (Endpoint & { model: string; voice: string }) | undefined;
  /** Transcription of audio holds (openai: when PTT_STT_MODEL is set; workers-ai: always). */
  stt?: (Endpoint & { model: string | undefined }) | undefined;
  memory: MemoryBounds;
}

/** The PTT_ variables read here, for the unknown-setting check. */
export const VOICE_VARS = [
  "PTT_WORKFLOW",
  "PTT_AI_MODEL",
  "PTT_LLM_MODEL",
  "PTT_SYSTEM_PROMPT",
  "PTT_LLM_TEMPERATURE",
  "PTT_LLM_MAX_TOKENS",
  "PTT_LLM_TIMEOUT_MS",
  "PTT_TTS_MODEL",
  "PTT_TTS_VOICE",
  "PTT_TTS_BASE_URL",
  "PTT_STT_MODEL",
  "PTT_STT_BASE_URL",
  "PTT_MEMORY_TURNS",
  "PTT_MEMORY_MAX_BYTES",
  "PTT_MEMORY_TTL_MS",
];

/**
 * PTT_WORKFLOW and, for the voice workflows, their settings. Throws naming the variable, so a
 * server never starts half-configured (an openai workflow without a model fails here, at start).
 * `runtime` says where it runs: workers-ai needs the Workers AI binding.
 */
export function voiceSettingsFromEnv(
  env: Env,
  runtime: "workers" | "other" = "other",
): { workflow: WorkflowName; voice: VoiceSettings | undefined } {
  const raw = env.PTT_WORKFLOW ?? "";
  const workflow = (raw === "" ? "echo" : raw) as WorkflowName;
  if (!["echo", "openai", "workers-ai"].includes(workflow)) {
    throw new Error(
      `PTT_WORKFLOW: must be one of echo, openai, workers-ai; got "${raw.slice(0, 40)}"`,
    );
  }
  if (workflow === "workers-ai" && runtime !== "workers") {
    throw new Error('PTT_WORKFLOW: "workers-ai" runs on Cloudflare Workers only (use "openai")');
  }
  const memory: MemoryBounds = {
    maxTurns: int(env, "PTT_MEMORY_TURNS", 0) ?? DEFAULT_MEMORY_BOUNDS.maxTurns,
    maxBytes: int(env, "PTT_MEMORY_MAX_BYTES", 1) ?? DEFAULT_MEMORY_BOUNDS.maxBytes,
    ttlMs: int(env, "PTT_MEMORY_TTL_MS", 1) ?? DEFAULT_MEMORY_BOUNDS.ttlMs,
  };
  if (workflow === "echo") return { workflow, voice: undefined };
  const baseUrl = url(env, "OPENAI_BASE_URL") ?? DEFAULT_BASE_URL;
  const apiKey = env.OPENAI_API_KEY || undefined;
  const model = env.PTT_LLM_MODEL || (workflow === "workers-ai" ? env.PTT_AI_MODEL : undefined);
  if (workflow === "openai" && !model) {
    throw new Error(
      'PTT_LLM_MODEL: required with PTT_WORKFLOW=openai (the chat model, e.g. "gpt-4o-mini" or "llama3.2")',
    );
  }
  const temperature = env.PTT_LLM_TEMPERATURE;
  if (temperature !== undefined && !(/^\d+(\.\d+)?$/.test(temperature) && +temperature <= 2)) {
    throw new Error(
      `PTT_LLM_TEMPERATURE: must be a number from 0 to 2; got "${temperature.slice(0, 40)}"`,
    );
  }
  // Parsed even when unused: a bad value is a mistake to report, not to ignore.
  const ttsBase = url(env, "PTT_TTS_BASE_URL") ?? baseUrl;
  const sttBase = url(env, "PTT_STT_BASE_URL") ?? baseUrl;
  const ttsModel = env.PTT_TTS_MODEL || undefined;
  const sttModel = env.PTT_STT_MODEL || undefined;
  return {
    workflow,
    voice: {
      workflow,
      llm: {
        baseUrl,
        apiKey,
        model: model || undefined,
        systemPrompt: env.PTT_SYSTEM_PROMPT || DEFAULT_SYSTEM_PROMPT,
        temperature: temperature === undefined ? undefined : Number(temperature),
        maxTokens: int(env, "PTT_LLM_MAX_TOKENS", 1),
      },
      timeoutMs: int(env, "PTT_LLM_TIMEOUT_MS", 1) ?? DEFAULT_TIMEOUT_MS,
      tts: ttsModel
        ? {
            baseUrl: ttsBase,
            apiKey,
            model: ttsModel,
            voice: env.PTT_TTS_VOICE || DEFAULT_TTS_VOICE,
          }
        : undefined,
      stt:
        sttModel || workflow === "workers-ai"
          ? { baseUrl: sttBase, apiKey, model: sttModel }
          : undefined,
      memory,
    },
  };
}

function int(env: Env, name: string, min: number): number | undefined {
  const raw = env[name];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min) {
    throw new Error(`${name}: must be an integer >= ${min}; got "${raw.slice(0, 40)}"`);
  }
  return n;
}

/** An http(s) URL without its trailing slash; never echoes credentials it may carry. */
function url(env: Env, name: string): string | undefined {
  const raw = env[name];
  if (raw === undefined || raw === "") return undefined;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new Error(`${name}: must be an http(s) URL such as http://127.0.0.1:11434/v1`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new Error(`${name}: must be an http(s) URL; got a ${parsed.protocol} URL`);
  }
  return raw.replace(/\/+$/, "");
}
