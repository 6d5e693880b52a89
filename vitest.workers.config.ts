import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

/**
 * Durable Object tests inside workerd (`npm run test:workers`): the Worker of
 * wrangler.toml with its DeviceObject, real SQLite storage and alarms. Small TTLs
 * so expiry and tombstone removal happen within a few seconds.
 */
const WORKERS_TEST_VARS = {
  PTT_IDLE_TTL_MS: "1000",
  PTT_TOMBSTONE_TTL_MS: "2000",
  PTT_ECHO_DELAY_MS: "0",
};

export default defineConfig({
  plugins: [
    cloudflareTest({
      main: "./src/runtimes/cloudflare/worker.ts",
      wrangler: { configPath: "./wrangler.toml" },
      miniflare: { bindings: WORKERS_TEST_VARS },
    }),
  ],
  test: {
    include: ["test/workers/**/*.test.ts"],
    testTimeout: 15_000,
    isolate: false,
    // One file at a time: several files count on 1 s TTLs, which a file running beside them
    // (the store suite's hundreds of steps) must not eat on a loaded 2-core machine.
    fileParallelism: false,
  },
});
