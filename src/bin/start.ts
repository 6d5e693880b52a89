import { createJoseVerifier } from "../auth/jose-verifier.js";
import { configFromEnv, type Env, type ServerConfig } from "../core/env-config.js";
import { createJsonLogger } from "../core/json-logger.js";
import type { Logger } from "../core/ports.js";
import type { PttCoreOptions } from "../core/ptt-core.js";
import { sharedStoreFromConfig } from "../drivers/shared-store.js";
import { createPttServer, type PttServer, serverOptionsFrom } from "../server/ptt-server.js";

/** The process as the entry points see it (Node's and Bun's `process`, Deno's `Deno`). */
export interface ProcessPort {
  env: Env;
  stdout(text: string): void;
  stderr(text: string): void;
  exit(code: number): never;
  onSignal(signal: "SIGTERM" | "SIGINT", fn: () => void): void;
}

export interface Entry {
  runtime: string;
  /** The session store of `config.store` (and what lives beside it), beyond memory. */
  openStore?(config: ServerConfig): Promise<Pick<PttCoreOptions, "store" | "memory" | "journal">>;
  serve(server: PttServer, config: ServerConfig): Promise<{ url: string; grpcUrl?: string }>;
}

/**
 * A server process, the same on every runtime: a bad setting, a store that cannot open or a
 * port that cannot be listened on is one line on stderr and exit code 2 (a failed start, for
 * a supervisor); then the start-up lines; SIGTERM / SIGINT shut down once, then exit 0.
 */
export async function start(proc: ProcessPort, entry: Entry): Promise<PttServer> {
  const fail = (what: string, err: unknown): never => {
    const code = (err as { code?: unknown } | null)?.code;
    const why = err instanceof Error ? err.message : String(err);
    const prefix = typeof code === "string" && !why.includes(code) ? `${code} ` : "";
    proc.stderr(`ptt-edge: ${what}: ${prefix}${why}\n`);
    return proc.exit(2);
  };
  let config: ServerConfig;
  try {
    config = configFromEnv(proc.env, "other", { jwtVerifier: createJoseVerifier });
  } catch (err) {
    return fail("invalid configuration", err);
  }
  const logger: Logger = createJsonLogger((line) => proc.stdout(`${line}\n`), config.logLevel);
  let stored: Pick<PttCoreOptions, "store" | "replyBus" | "memory" | "journal"> | undefined;
  try {
    // PTT_STORE=redis://… is the same on every runtime; the runtime opens any other store.
    stored = (await sharedStoreFromConfig(config, logger)) ?? (await entry.openStore?.(config));
  } catch (err) {
    return fail(`cannot open the session store (PTT_STORE=${config.store})`, err);
  }
  const server = createPttServer(serverOptionsFrom(config, { logger, ...stored }));
  let urls: { url: string; grpcUrl?: string };
  try {
    urls = await entry.serve(server, config);
  } catch (err) {
    await server.core.store.close().catch(() => {});
    const grpc = entry.runtime === "node" ? "" : ` (gRPC ${config.grpcPort ?? "-"})`;
    return fail(`cannot listen on ${config.host}:${config.port}${grpc}`, err);
  }
  const { text, fields } = server.describe(entry.runtime, urls.url, urls.grpcUrl);
  logger.info("ptt-edge listening", fields);
  proc.stderr(`${text}\n`);
  let stopping = false;
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    proc.onSignal(signal, () => {
      if (stopping) return;
      stopping = true;
      logger.info("shutting down", { signal, graceMs: server.graceMs });
      server.shutdown().then(
        () => proc.exit(0),
        (err: unknown) => {
          logger.error("shutdown failed", { error: String(err) });
          proc.exit(1);
        },
      );
    });
  }
  return server;
}
