import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, describe, it } from "vitest";
import { clientFor } from "../contract/calls.js";
import { TEST_LIMITS } from "../contract/target.js";
import { expectHoldSurvivesRestart } from "../support/restart-hold.js";
import { limitsEnv } from "../support/spawn-runtime.js";
import { type SpawnedWorker, spawnWrangler } from "../support/spawn-wrangler.js";

// Sessions live in the device object's SQLite storage: stopping the local runtime mid-hold
// and starting it again on the same state directory loses nothing.
describe("workers: a hold survives a restart of the runtime", () => {
  let state: string | undefined;
  let worker: SpawnedWorker | undefined;
  afterAll(async () => {
    await worker?.stop();
    if (state) await rm(state, { recursive: true, force: true });
  });

  it("COLLECT, stop workerd, start it again on the same state, COMMIT: the full text", async () => {
    const stateDir = await mkdtemp(join(tmpdir(), "ptt-wrangler-restart-"));
    state = stateDir;
    const vars = limitsEnv(TEST_LIMITS);
    await expectHoldSurvivesRestart("restart", {
      start: async (phase) => {
        worker = await spawnWrangler(vars, stateDir);
        return clientFor({
          name: `workers/${phase}`,
          transport: createConnectTransport({ baseUrl: worker.url, httpVersion: "1.1" }),
          limits: TEST_LIMITS,
          echoDelayMs: 0,
        });
      },
      stop: async () => {
        await worker?.stop();
      },
    });
  }, 120_000);
});
