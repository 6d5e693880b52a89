import { afterEach, describe, expect, it } from "vitest";
import {
  collectBody,
  commitBody,
  lastContent,
  RawBridge,
  sleep,
  textOf,
} from "../bridge/raw-bridge.js";
import { newDevice, newSession } from "../contract/calls.js";
import { type SpawnedRuntime, spawnRuntime } from "../support/spawn-runtime.js";

// SIGTERM on Bun and Deno with a bridge reply running: the same order as Node's close().
// New calls get CallEnd unavailable, the reply finishes within PTT_GRACE_MS, then the
// socket closes (1001) and the process exits 0.

const PROMPT = "a. ".repeat(40); // ~0.8 s of reply at 20 ms a sentence
const GRACE_MS = 3000;

let running: SpawnedRuntime | undefined;
afterEach(async () => {
  await running?.stop();
  running = undefined;
});

for (const runtime of ["bun", "deno"] as const) {
  describe(`${runtime}: bridge sockets on SIGTERM`, () => {
    it("a running reply completes within the grace period, a new call gets unavailable, then 1001 and exit 0", async () => {
      const rt = await spawnRuntime(runtime, {
        PTT_ECHO_DELAY_MS: "20",
        PTT_GRACE_MS: String(GRACE_MS),
      });
      running = rt;
      const raw = await RawBridge.open(`${rt.url.replace("http", "ws")}/v1/bridge`);
      const hw = newDevice(runtime);
      const sid = newSession();
      expect((await raw.run(1, collectBody(hw, sid, 1, PROMPT))).end.code).toBe("");
      raw.send(2, commitBody(hw, sid));
      await raw.until(() => raw.call(2).frames.length > 0, "the first reply frame");

      const exited = new Promise<number | null>((resolve) => rt.process.once("exit", resolve));
      const t0 = performance.now();
      rt.process.kill("SIGTERM");
      await sleep(100);
      const refused = await raw.run(3, collectBody(newDevice(), newSession(), 1, "too late"));
      expect(refused.end.code).toBe("unavailable");
      expect(raw.call(2).ends).toHaveLength(0);

      const end = await raw.end(2, 1, 5000);
      expect(end.code).toBe("");
      expect(textOf(raw.call(2))).toBe(PROMPT);
      expect(lastContent(raw.call(2))).toEqual({
        case: "endMessage",
        value: "RESPONSE_COMPLETED",
      });
      expect((await raw.closed).code).toBe(1001);
      const closedMs = performance.now() - t0;
      expect(closedMs).toBeLessThan(GRACE_MS - 500); // when the reply ended, not the grace
      expect(await exited).toBe(0);
      const exitMs = performance.now() - t0;
      console.info(
        `${runtime}: reply finished and socket closed ${Math.round(closedMs)} ms after SIGTERM, exit 0 after ${Math.round(exitMs)} ms`,
      );
      // The gRPC port's sessions are given the whole grace period (h2c-server.ts).
      expect(exitMs).toBeLessThan(GRACE_MS + 2000);
    }, 60_000);
  });
}
