import type { ServerConfig } from "../../core/env-config.js";
import { configFromEnv } from "../../core/env-config.js";
import type { DeviceNamespace } from "./device-proxy.js";
import type { AiBinding } from "./workers-ai.js";

/** Bindings and vars of wrangler.toml. PTT_* vars are the same settings as on every runtime. */
export interface Env {
  DEVICE: DeviceNamespace & DurableObjectNamespace;
  /** Optional Workers AI binding, used when PTT_WORKFLOW = "workers-ai". */
  AI?: AiBinding;
  [name: string]: unknown;
}

/** The PTT_* string vars of the environment, read like process.env on the other runtimes. */
export function configOf(env: Env): ServerConfig {
  const vars: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (
      typeof v === "string" &&
      k.startsWith("PTT_") &&
      k !== "PTT_WORKFLOW" &&
      k !== "PTT_AI_MODEL"
    ) {
      vars[k] = v;
    }
  }
  return configFromEnv(vars);
}
