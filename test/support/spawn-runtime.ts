import { type ChildProcess, spawn } from "node:child_process";
import { resolve } from "node:path";
import { limitEnvName } from "../../src/core/env-config.js";
import type { Limits } from "../../src/core/limits.js";

const ROOT = resolve(import.meta.dirname, "../..");

export interface SpawnedRuntime {
  /** Connect, gRPC-Web, bridge, /healthz... */
  url: string;
  /** node:http2 port: gRPC (and Connect / gRPC-Web over HTTP/2). */
  grpcUrl: string;
  process: ChildProcess;
  output: () => string;
  stop(): Promise<number | null>;
}

/** The command that starts each runtime from its npm binary (the PID we kill is the server). */
export const RUNTIME_COMMANDS = {
  node: [process.execPath, "--import", "tsx", "src/bin/node.ts"],
  bun: [resolve(ROOT, "node_modules/.bin/bun"), "src/bin/bun.ts"],
  deno: [
    resolve(ROOT, "node_modules/deno/deno"),
    "run",
    "--allow-net",
    "--allow-env",
    "--allow-read",
    "--allow-sys",
    "src/bin/deno.ts",
  ],
} as const;

export function limitsEnv(limits: Limits): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(limits))
    env[limitEnvName(key as keyof Limits)] = String(value);
  return env;
}

/**
 * Starts a runtime on free ports and resolves once it printed where it listens. `flags` go
 * before the entry point (e.g. Deno's `--allow-write=<dir>` for a Deno KV file).
 */
export function spawnRuntime(
  runtime: keyof typeof RUNTIME_COMMANDS,
  env: Record<string, string>,
  flags: string[] = [],
): Promise<SpawnedRuntime> {
  const [cmd, ...rest] = RUNTIME_COMMANDS[runtime];
  const args = [...rest.slice(0, -1), ...flags, ...rest.slice(-1)];
  const child = spawn(cmd, args, {
    cwd: ROOT,
    env: { ...process.env, PORT: "0", GRPC_PORT: "0", DENO_NO_UPDATE_CHECK: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout?.on("data", (d) => {
    out += d;
  });
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${runtime} did not start in 30 s:\n${out}`)),
      30_000,
    );
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${runtime} exited with ${code} before listening:\n${out}`));
    });
    child.stderr?.on("data", (d) => {
      out += d;
      const url = /listening on (http:\/\/\S+)/.exec(out)?.[1];
      // Node serves gRPC on its one port; Bun and Deno on a second one.
      const grpcUrl = runtime === "node" ? url : /gRPC on (http:\/\/\S+)/.exec(out)?.[1];
      if (!url || !grpcUrl) return;
      clearTimeout(timer);
      child.removeAllListeners("exit");
      resolvePromise({
        url,
        grpcUrl,
        process: child,
        output: () => out,
        stop: () =>
          new Promise((done) => {
            // Already gone (a test's kill -9 included: then only signalCode is set).
            if (child.exitCode !== null || child.signalCode !== null) return done(child.exitCode);
            const kill = setTimeout(() => child.kill("SIGKILL"), 10_000);
            child.once("exit", (code) => {
              clearTimeout(kill);
              done(code);
            });
            child.kill("SIGTERM");
          }),
      });
    });
  });
}
