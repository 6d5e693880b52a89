import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientFor } from "../contract/calls.js";
import { contractSuite } from "../contract/suite.js";
import { type Target, TEST_ECHO_DELAY_MS, TEST_LIMITS } from "../contract/target.js";
import { expectHoldSurvivesRestart } from "../support/restart-hold.js";
import { limitsEnv, type SpawnedRuntime, spawnRuntime } from "../support/spawn-runtime.js";

// Deno with PTT_STORE=deno-kv on a file: the contract suite over one transport (the store is
// what differs; every transport reaches it the same way), and a hold that survives a restart.
async function startDeno(dir: string): Promise<SpawnedRuntime> {
  const env = {
    ...limitsEnv(TEST_LIMITS),
    PTT_ECHO_DELAY_MS: String(TEST_ECHO_DELAY_MS),
    PTT_GRACE_MS: "0",
    PTT_STORE: "deno-kv",
    PTT_DENO_KV_PATH: join(dir, "sessions.sqlite3"),
  };
  return spawnRuntime("deno", env, [`--allow-write=${dir}`]);
}

function connectTarget(rt: SpawnedRuntime, name: string): Target {
  return {
    name,
    transport: createConnectTransport({ baseUrl: rt.url, httpVersion: "1.1" }),
    limits: TEST_LIMITS,
    echoDelayMs: TEST_ECHO_DELAY_MS,
  };
}

describe("contract: deno with the Deno KV store", () => {
  let dir: string;
  let rt: SpawnedRuntime | undefined;
  let target: Target;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "ptt-deno-kv-"));
    rt = await startDeno(dir);
    target = connectTarget(rt, "deno+kv/connect-h1");
  }, 60_000);
  afterAll(async () => {
    await rt?.stop();
    await rm(dir, { recursive: true, force: true });
  });
  contractSuite({}, () => target);
});

describe("deno with the Deno KV store: a hold survives a restart", () => {
  let dir: string | undefined;
  let rt: SpawnedRuntime | undefined;
  afterAll(async () => {
    await rt?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("COLLECT, stop Deno, start it again on the same file, COMMIT: the full text", async () => {
    const kvDir = await mkdtemp(join(tmpdir(), "ptt-deno-kv-restart-"));
    dir = kvDir;
    await expectHoldSurvivesRestart("kv-restart", {
      start: async (phase) => {
        rt = await startDeno(kvDir);
        return clientFor(connectTarget(rt, `deno+kv/${phase}`));
      },
      stop: async () => {
        expect(await rt?.stop()).toBe(0);
      },
    });
  }, 120_000);
});
