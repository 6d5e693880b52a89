import { createJoseVerifier } from "../../auth/jose-verifier.js";
import { configFromEnv, type ServerConfig } from "../../core/env-config.js";
import { createJsonLogger } from "../../core/json-logger.js";
import { type NodeServer, startNodeServer } from "./server.js";

function fatal(what: string, err: unknown): never {
  const code = (err as { code?: string }).code;
  const why = err instanceof Error ? err.message : String(err);
  process.stderr.write(
    `ptt-edge: ${what}: ${code && !why.includes(code) ? `${code} ` : ""}${why}\n`,
  );
  process.exit(2);
}

let config: ServerConfig;
try {
  config = configFromEnv(process.env, "other", { jwtVerifier: createJoseVerifier });
} catch (err) {
  fatal("invalid configuration", err);
}
const logger = createJsonLogger((line) => process.stdout.write(`${line}\n`), config.logLevel);
let server: NodeServer;
try {
  server = await startNodeServer({
    port: config.port,
    host: config.host,
    graceMs: config.graceMs,
    config: { ...config.core, logger },
  });
} catch (err) {
  fatal(`cannot listen on ${config.host}:${config.port}`, err);
}
logger.info("ptt-edge listening", {
  url: server.url,
  transports: ["grpc (h2c)", "connect (http/1.1, h2c)", "grpc-web (http/1.1, h2c)", "bridge (ws)"],
  store: "memory",
  workflow: "echo",
});
process.stderr.write(
  `ptt-edge listening on ${server.url}\n  gRPC (h2c), Connect and gRPC-Web (HTTP/1.1 + h2c), bridge ${server.url.replace("http", "ws")}/v1/bridge\n  demo ${server.url}/  health /healthz /readyz  metrics /metrics\n`,
);

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, () => {
    logger.info("shutting down", { signal, graceMs: config.graceMs });
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error("shutdown failed", { error: String(err) });
        process.exit(1);
      },
    );
  });
}
