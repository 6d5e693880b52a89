import { createAuthenticator, type JwtVerifierFactory } from "./auth.js";
import { AUTH_VARS, authSettingsFromEnv } from "./auth-config.js";
import {
  CONNECTION_LIMIT_VARS,
  type ConnectionLimits,
  resolveConnectionLimits,
} from "./connection-limits.js";
import { DEFAULT_LIMITS, LIMIT_NAMES, type Limits } from "./limits.js";
import type { BargeIn, PttCoreOptions } from "./ptt-core.js";
import { VOICE_VARS, voiceSettingsFromEnv, type WorkflowName } from "./voice/voice-config.js";

export type Env = Readonly<Record<string, string | undefined>>;

export interface ServerConfig {
  port: number;
  /**
   * Bun and Deno: the node:http2 port for gRPC (their own servers cannot send trailers).
   * GRPC_PORT, else PORT+1 (0, a free port, when PORT is 0).
   */
  grpcPort: number | undefined;
  host: string;
  /** How long running replies may finish after SIGTERM before they are cancelled. */
  graceMs: number;
  logLevel: "debug" | "info" | "warn" | "error";
  /** PTT_STORE: where sessions live (deno-kv on Deno only; a redis:// URL on Node, Bun, Deno). */
  store: "memory" | "deno-kv" | "redis";
  /** PTT_STORE=redis://… or rediss://…: the shared store of several instances. */
  redis: RedisSettings | undefined;
  /** PTT_WORKFLOW: echo (default), openai, workers-ai (Workers only). */
  workflow: WorkflowName;
  /** PTT_GRPC_FAST_PATH: node:http2 runtimes serve plain gRPC calls without connect's pipeline. */
  grpcFastPath: boolean;
  /** Connections and streams: timeouts and caps of the listeners (connection-limits.ts). */
  connections: Readonly<ConnectionLimits>;
  core: PttCoreOptions;
}

export interface RedisSettings {
  url: string;
  /** PTT_REDIS_PREFIX: every key and channel starts with `<prefix>:` (default "ptt"). */
  prefix: string;
  /** PTT_REDIS_TIMEOUT_MS: a command Redis has not answered by then fails UNAVAILABLE. */
  commandTimeoutMs: number;
}

const KNOWN_VARS = [
  "PTT_ALLOWED_ORIGINS",
  "PTT_BARGE_IN",
  ...AUTH_VARS,
  "PTT_GRACE_MS",
  "PTT_LOG_LEVEL",
  "PTT_END_MESSAGE",
  "PTT_ECHO_DELAY_MS",
  "PTT_GRPC_FAST_PATH",
  "PTT_RESUME_WINDOW_MS",
  // The session store (src/bin/deno.ts opens Deno KV).
  "PTT_STORE",
  "PTT_DENO_KV_PATH",
  "PTT_REDIS_PREFIX",
  "PTT_REDIS_TIMEOUT_MS",
  ...Object.values(CONNECTION_LIMIT_VARS),
  // The voice workflow's (voice/voice-config.ts).
  ...VOICE_VARS,
];

/** Environment variable of each limit: PTT_ + its wire name in upper case. */
export function limitEnvName(limit: keyof Limits): string {
  return `PTT_${LIMIT_NAMES[limit].toUpperCase()}`;
}

export interface ConfigDeps {
  /**
   * Verifies JWTs (src/auth/jose-verifier.ts): core has no JOSE library. Without it, a
   * JWT setting fails the start rather than leaving auth off.
   */
  jwtVerifier?: JwtVerifierFactory;
}

/**
 * Reads the server's configuration from environment variables (any runtime's),
 * failing loudly with the variable's name rather than starting on a typo.
 */
export function configFromEnv(
  env: Env,
  runtime: "workers" | "other" = "other",
  deps: ConfigDeps = {},
): ServerConfig {
  const known = new Set([
    ...KNOWN_VARS,
    ...Object.keys(DEFAULT_LIMITS).map((k) => limitEnvName(k as keyof Limits)),
  ]);
  for (const name of Object.keys(env)) {
    if (name.startsWith("PTT_") && !known.has(name)) {
      throw new Error(
        `${name}: unknown setting (a typo?); known PTT_ variables: ${[...known].sort().join(", ")}`,
      );
    }
  }
  const limits: Partial<Limits> = {};
  for (const key of Object.keys(DEFAULT_LIMITS) as (keyof Limits)[]) {
    const name = limitEnvName(key);
    if (env[name] !== undefined) limits[key] = positiveInt(env, name);
  }
  const connections: Partial<ConnectionLimits> = {};
  for (const [key, name] of Object.entries(CONNECTION_LIMIT_VARS)) {
    if (env[name] !== undefined)
      connections[key as keyof ConnectionLimits] = positiveInt(env, name);
  }
  const bargeIn = oneOf(env, "PTT_BARGE_IN", ["press", "commit", "off"] as const, "press");
  const grpcFastPath = oneOf(env, "PTT_GRPC_FAST_PATH", ["0", "1"] as const, "1") === "1";
  const { workflow, voice } = voiceSettingsFromEnv(env, runtime);
  const authSettings = authSettingsFromEnv(env);
  const port = env.PORT === undefined ? 8080 : positiveInt(env, "PORT", 0, 65535);
  // Only Bun and Deno use it: PORT=65535 is fine on Node, and fails there when they start.
  const next = port === 0 ? 0 : port + 1;
  const grpcPort =
    env.GRPC_PORT !== undefined
      ? positiveInt(env, "GRPC_PORT", 0, 65535)
      : next <= 65535
        ? next
        : undefined;
  return {
    port,
    grpcPort,
    host: env.HOST || "127.0.0.1",
    graceMs: env.PTT_GRACE_MS === undefined ? 10_000 : positiveInt(env, "PTT_GRACE_MS", 0),
    logLevel: oneOf(env, "PTT_LOG_LEVEL", ["debug", "info", "warn", "error"] as const, "info"),
    ...storeFromEnv(env),
    workflow,
    grpcFastPath,
    connections: resolveConnectionLimits(connections),
    core: {
      voice,
      limits,
      bargeIn: bargeIn as BargeIn,
      resumeWindowMs:
        env.PTT_RESUME_WINDOW_MS === undefined
          ? undefined
          : positiveInt(env, "PTT_RESUME_WINDOW_MS", 0),
      endMessage: env.PTT_END_MESSAGE || undefined,
      echoDelayMs:
        env.PTT_ECHO_DELAY_MS === undefined ? undefined : positiveInt(env, "PTT_ECHO_DELAY_MS", 0),
      auth: authSettings ? createAuthenticator(authSettings, deps.jwtVerifier) : undefined,
      // The default 127.0.0.1 is loopback: guard the bridge against DNS rebinding there.
      localOnly: /^(127\.|localhost$|::1$|\[::1\]$)/.test(env.HOST || "127.0.0.1"),
      allowedOrigins: (env.PTT_ALLOWED_ORIGINS ?? "")
        .split(",")
        .map((o) => o.trim())
        .filter((o) => o.length > 0),
    },
  };
}

function storeFromEnv(env: Env): Pick<ServerConfig, "store" | "redis"> {
  const raw = env.PTT_STORE ?? "";
  if (!/^rediss?:\/\//i.test(raw)) {
    for (const name of ["PTT_REDIS_PREFIX", "PTT_REDIS_TIMEOUT_MS"]) {
      if (env[name] !== undefined) throw new Error(`${name}: only used with PTT_STORE=redis://…`);
    }
    const store = oneOf(env, "PTT_STORE", ["memory", "deno-kv"] as const, "memory");
    return { store, redis: undefined };
  }
  try {
    new URL(raw);
  } catch {
    throw new Error("PTT_STORE: not a valid redis:// or rediss:// URL");
  }
  const prefix = env.PTT_REDIS_PREFIX ?? "ptt";
  // Braces would change the keys' hash tag (one cluster slot per device).
  if (!/^[A-Za-z0-9._:-]{1,64}$/.test(prefix)) {
    throw new Error(
      `PTT_REDIS_PREFIX: 1 to 64 letters, digits and . _ : - (no braces); got "${prefix.slice(0, 40)}"`,
    );
  }
  const commandTimeoutMs =
    env.PTT_REDIS_TIMEOUT_MS === undefined ? 1000 : positiveInt(env, "PTT_REDIS_TIMEOUT_MS", 10);
  return { store: "redis", redis: { url: raw, prefix, commandTimeoutMs } };
}

function positiveInt(env: Env, name: string, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  const raw = env[name] ?? "";
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
    throw new Error(`${name}: must be an integer ${range}; got "${raw.slice(0, 40)}"`);
  }
  return n;
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if ((allowed as readonly string[]).includes(raw)) return raw as T;
  throw new Error(`${name}: must be one of ${allowed.join(", ")}; got "${raw.slice(0, 40)}"`);
}

/** The gRPC port of runtimes that need a second one (Bun, Deno), or why there is none. */
export function requireGrpcPort(config: ServerConfig): number {
  if (config.grpcPort !== undefined) return config.grpcPort;
  throw new Error(`GRPC_PORT: PORT+1 (${config.port + 1}) is past 65535; set GRPC_PORT`);
}
