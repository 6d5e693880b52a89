/// <reference types="@cloudflare/vitest-pool-workers/types" />
import type { Env as WorkerEnv } from "../../src/runtimes/cloudflare/env.js";

// `env` of cloudflare:workers and cloudflare:test is the Worker's Env (wrangler.toml + test vars).
declare global {
  namespace Cloudflare {
    interface Env extends WorkerEnv {}
  }
}
