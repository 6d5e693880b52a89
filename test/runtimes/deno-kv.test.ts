import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientFor, commit, newDevice, newSession, streamAudio } from "../contract/calls.js";
import { contractSuite } from "../contract/suite.js";
import { type Target, TEST_ECHO_DELAY_MS, TEST_LIMITS } from "../contract/target.js";
import { expectHoldSurvivesRestart } from "../support/restart-hold.js";
import { limitsEnv, type SpawnedRuntime, spawnRuntime } from "../support/spawn-runtime.js";

// Deno with PTT_STORE=deno-kv on a file: the contract suite over one transport (the store is
// what differs; every transport reaches it the same way), and a hold that survives a restart.
//
// Fewer reply slots than the other runs: the limits case fills every slot with long replies
// of one device, and here each COMMIT is a transaction on an SQLite file and each of the
// echo's reply frames (one per word, every 5 ms) another. 120 such replies started at about 5
// a second on a loaded 2-core machine (the case timed out at 30 s with 107 running); 40 fill
// the slots in a few seconds and test the same rule.
const LIMITS = {
  ...TEST_LIMITS,
  maxConcurrentReplies: 40,
  maxRepliesPerDevice: 40,
  maxRepliesPerConnection: 40,
};

async function startDeno(dir: string): Promise<SpawnedRuntime> {
  const env = {
    ...limitsEnv(LIMITS),
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
    limits: LIMITS,
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

describe("deno with the Deno KV store: a reply is resumed after a restart", () => {
  let dir: string | undefined;
  let rt: SpawnedRuntime | undefined;
  afterAll(async () => {
    await rt?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("COMMIT to its end, stop Deno, start it again, resume from 2: the rest from KV, same turn id, no workflow run", async () => {
    const kvDir = await mkdtemp(join(tmpdir(), "ptt-deno-kv-resume-"));
    dir = kvDir;
    const first = await startDeno(kvDir);
    rt = first;
    const hw = newDevice("kv-resume");
    const sid = newSession();
    const prompt = "One. Two. Three. Four. Five.";
    const whole = await streamAudio(
      clientFor(connectTarget(first, "deno+kv/before")),
      commit(hw, sid, { prompt }),
    );
    expect(whole.code).toBeUndefined();
    expect(whole.frames.length).toBeGreaterThan(3);
    const turnId = whole.headers.get("ptt-turn-id");
    expect(turnId).toMatch(/^[0-9a-f-]{36}$/);
    // Its end by "close" (stdio done too): stop()'s "exit" did not arrive here after a reply.
    const code = await new Promise<number | null>((done) => {
      first.process.on("close", (c) => done(c));
      first.process.kill("SIGTERM");
    });
    expect(code).toBe(0);

    const second = await startDeno(kvDir);
    rt = second;
    const r = await streamAudio(
      clientFor(connectTarget(second, "deno+kv/after")),
      commit(hw, sid),
      {
        headers: { "ptt-resume-from": "2" },
      },
    );
    expect(r.code).toBeUndefined();
    expect(r.headers.get("ptt-turn-id")).toBe(turnId);
    expect(r.frames).toEqual(whole.frames.slice(2));
    // The restarted process replayed from KV: it started no workflow.
    const metrics = await (await fetch(new URL("/metrics", second.url))).text();
    expect(metrics).toMatch(/^ptt_workflow_runs_total 0$/m);
  }, 60_000);
});
