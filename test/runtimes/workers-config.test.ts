import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { type SpawnedWorker, spawnWrangler } from "../support/spawn-wrangler.js";

// A bad setting on Workers is named, not turned into anonymous 500s: `wrangler dev` prints it
// when it loads the Worker, every request but /healthz answers with it, and /healthz still
// answers (the process is alive; it is the configuration that is wrong).
describe("workers: a bad setting", () => {
  let state: string;
  let worker: SpawnedWorker;
  const WRONG = 'PTT_BARGE_IN: must be one of press, commit, off; got "sometimes"';

  beforeAll(async () => {
    state = await mkdtemp(join(tmpdir(), "ptt-wrangler-config-"));
    worker = await spawnWrangler({ PTT_BARGE_IN: "sometimes" }, state);
  }, 90_000);

  afterAll(async () => {
    await worker?.stop();
    if (state) await rm(state, { recursive: true, force: true });
  });

  it("is named at start-up; /healthz answers; every other request names the variable", async () => {
    // Only /healthz was asked so far (spawnWrangler's readiness probe): the start-up line.
    expect(worker.output()).toContain(`ptt-edge: invalid configuration: ${WRONG}`);
    const health = await fetch(`${worker.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.text()).toBe("ok\n");
    for (const [path, init] of [
      ["/", {}],
      ["/readyz", {}],
      [
        "/streaming.StreamingService/InterruptSession",
        {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ hardwareId: "dev-1" }),
        },
      ],
    ] as const) {
      const res = await fetch(`${worker.url}${path}`, init);
      expect(res.status, path).toBe(500);
      expect(await res.text(), path).toBe(`ptt-edge: invalid configuration: ${WRONG}\n`);
    }
    // A browser's socket: refused at the upgrade with the same words.
    const refused = await new Promise<{ status?: number; body: string }>((done, fail) => {
      const ws = new WebSocket(`${worker.url.replace(/^http/, "ws")}/v1/bridge`);
      ws.once("open", () => fail(new Error("the bridge opened")));
      ws.once("error", fail);
      ws.once("unexpected-response", (_req, res) => {
        let body = "";
        res.on("data", (d: Buffer) => {
          body += d;
        });
        res.on("end", () => done({ status: res.statusCode, body }));
      });
    });
    expect(refused).toEqual({ status: 500, body: `ptt-edge: invalid configuration: ${WRONG}\n` });
  }, 60_000);
});
