import { createJoseVerifier } from "../../auth/jose-verifier.js";
import type { ServerConfig } from "../../core/env-config.js";
import { configFromEnv, limitEnvName } from "../../core/env-config.js";
import { createJsonLogger } from "../../core/json-logger.js";
import { DEFAULT_LIMITS, type Limits } from "../../core/limits.js";
import type { Logger } from "../../core/ports.js";
import type { DeviceNamespace } from "./device-client.js";
import type { AiBinding } from "./workers-ai.js";

/** Bindings and vars of wrangler.toml. PTT_* vars are the same settings as on every runtime. */
export interface Env {
  DEVICE: DeviceNamespace & DurableObjectNamespace;
  /** Optional Workers AI binding, used when PTT_WORKFLOW = "workers-ai". */
  AI?: AiBinding;
  [name: string]: unknown;
}

/**
 * A session is one value in its device object's storage, and SQLite-backed Durable
 * Object storage refuses values over 2 MB. On Workers these per-session limits are
 * capped so that the largest record they allow fits: 1 MiB of audio + a 512 KiB
 * base64 screenshot + 64 KiB of text (up to 128 KiB stored, as UTF-16) + about 150 bytes
 * of bookkeeping per chunk (2,000 chunks) stays under 2 MB (test/workers/storage-limits).
 */
export const WORKERS_LIMIT_CAPS = Object.freeze({
  maxAudioBytesPerSession: 1024 * 1024,
  maxScreenshotBytes: 512 * 1024,
  maxSessionTextBytes: 64 * 1024,
  maxChunksPerSession: 2000,
} satisfies Partial<Limits>);

export interface WorkersConfig extends ServerConfig {
  /** Settings lowered to WORKERS_LIMIT_CAPS, as "PTT_NAME: asked -> used", for the log. */
  clamped: string[];
}

/** The PTT_* and OPENAI_* string vars (and secrets), read like process.env elsewhere. */
export function configOf(env: Env): WorkersConfig {
  const vars: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (typeof v === "string" && (k.startsWith("PTT_") || k.startsWith("OPENAI_"))) vars[k] = v;
  }
  const config = configFromEnv(vars, "workers", { jwtVerifier: createJoseVerifier });
  if (config.workflow === "workers-ai" && !env.AI) {
    throw new Error('PTT_WORKFLOW: "workers-ai" needs the AI binding ([ai] binding = "AI")');
  }
  const limits: Partial<Limits> = { ...config.core.limits };
  const clamped: string[] = [];
  for (const [key, cap] of Object.entries(WORKERS_LIMIT_CAPS) as [keyof Limits, number][]) {
    const asked = limits[key] ?? DEFAULT_LIMITS[key];
    if (asked <= cap) continue;
    limits[key] = cap;
    if (vars[limitEnvName(key)] !== undefined)
      clamped.push(`${limitEnvName(key)}: ${asked} -> ${cap}`);
  }
  // A Worker is served on its public hostname, never on loopback (HOST means nothing here): the
  // loopback-only Host/Origin rule (DNS rebinding) would refuse every request it gets.
  return { ...config, core: { ...config.core, limits, localOnly: false }, clamped };
}

/**
 * Structured JSON lines on console.log (Workers Logs, `wrangler tail`), at PTT_LOG_LEVEL
 * (info by default): core passes transcript text at debug level only.
 */
export function loggerOf(config: ServerConfig): Logger {
  // Looked up per line, so a test (or a tail consumer) that wraps console.log sees it.
  return createJsonLogger((line) => console.log(line), config.logLevel);
}
