import { configFromEnv } from "../../core/env-config.js";
import { createJsonLogger } from "../../core/json-logger.js";
import { startNodeServer } from "./server.js";

const config = configFromEnv(process.env);
const logger = createJsonLogger((line) => process.stdout.write(`${line}\n`), config.logLevel);
const server = await startNodeServer({
  port: config.port,
  host: config.host,
  graceMs: config.graceMs,
  config: { ...config.core, logger },
});
logger.info("ptt-edge listening", {
  url: server.url,
  transports: ["grpc (h2c)", "connect (http/1.1, h2c)", "grpc-web (http/1.1, h2c)"],
  store: "memory",
  workflow: "echo",
});
process.stderr.write(
  `ptt-edge listening on ${server.url}\n  gRPC (h2c), Connect (HTTP/1.1 + h2c), gRPC-Web; /healthz /readyz /metrics\n`,
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
