import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, describe, expect, it } from "vitest";
import {
  ChunkMode,
  clientFor,
  collect,
  commit,
  endMessage,
  newDevice,
  newSession,
  replyText,
  streamAudio,
} from "../contract/calls.js";
import { TEST_LIMITS } from "../contract/target.js";
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
    state = await mkdtemp(join(tmpdir(), "ptt-wrangler-restart-"));
    const vars = limitsEnv(TEST_LIMITS);
    const hw = newDevice("restart");
    const sid = newSession();
    const delta = { chunkMode: ChunkMode.DELTA };

    worker = await spawnWrangler(vars, state);
    const before = clientFor({
      name: "workers/before",
      transport: createConnectTransport({ baseUrl: worker.url, httpVersion: "1.1" }),
      limits: TEST_LIMITS,
      echoDelayMs: 0,
    });
    for (const [seq, text] of [
      [1, "nothing "],
      [3, "is lost"],
      [2, "here "],
    ] as const) {
      expect((await streamAudio(before, collect(hw, sid, seq, text, delta))).code).toBeUndefined();
    }
    await worker.stop();

    worker = await spawnWrangler(vars, state);
    const after = clientFor({
      name: "workers/after",
      transport: createConnectTransport({ baseUrl: worker.url, httpVersion: "1.1" }),
      limits: TEST_LIMITS,
      echoDelayMs: 0,
    });
    const dup = await streamAudio(after, collect(hw, sid, 2, "here ", delta));
    expect(dup.trailers.get("ptt-collect")).toBe("duplicate");
    const r = await streamAudio(after, commit(hw, sid));
    expect(r.code).toBeUndefined();
    expect(replyText(r)).toBe("nothing here is lost");
    expect(endMessage(r)).toBe("RESPONSE_COMPLETED");
  }, 120_000);
});
