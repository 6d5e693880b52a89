// ptt-edge on Node (memory store unless PTT_STORE says otherwise, echo workflow) as the bench starts it: like `npm start`, plus
// a memory probe over the IPC channel (run with --expose-gc). Prints "LISTENING <port>".
import process from "node:process";
import { createJoseVerifier } from "../../src/auth/jose-verifier.js";
import { configFromEnv } from "../../src/core/env-config.js";
import { silentLogger } from "../../src/core/ptt-core.js";
import { sharedStoreFromConfig } from "../../src/drivers/shared-store.js";
import { startNodeServer } from "../../src/runtimes/node/server.js";

const config = configFromEnv(process.env, "other", { jwtVerifier: createJoseVerifier });
// PTT_STORE=redis://…: the Redis store and reply bus (bench/redis.ts), as `npm start` opens them.
const shared = await sharedStoreFromConfig(config, silentLogger);
const server = await startNodeServer({
  port: config.port,
  host: config.host,
  config: { ...config.core, ...shared },
  grpcFastPath: config.grpcFastPath,
  graceMs: 0,
});
process.stdout.write(`LISTENING ${server.port}\n`);

const gc = (globalThis as { gc?: () => void }).gc;
process.on("message", (msg) => {
  if (msg !== "memory") return;
  // Several passes: weak refs and finalizers of closed streams need more than one.
  for (let i = 0; i < 4; i++) gc?.();
  const m = process.memoryUsage();
  process.send?.({ heapUsed: m.heapUsed, external: m.external, rss: m.rss, gc: gc !== undefined });
});
process.once("SIGTERM", () => void server.close(0).then(() => process.exit(0)));
