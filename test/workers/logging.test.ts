import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import worker from "../../src/runtimes/cloudflare/worker.js";
import { collect, commit, newDevice, streamAudio } from "./helpers.js";

/** What console.log printed meanwhile: the raw lines, and those that are JSON objects. */
let lines: string[] = [];
beforeEach(() => {
  lines = [];
  vi.spyOn(console, "log").mockImplementation((...args: unknown[]) => {
    lines.push(args.map(String).join(" "));
  });
});
afterEach(() => {
  vi.restoreAllMocks();
});

function entries(): Record<string, unknown>[] {
  return lines.flatMap((line) => {
    try {
      const value: unknown = JSON.parse(line);
      return typeof value === "object" && value !== null ? [value as Record<string, unknown>] : [];
    } catch {
      return [];
    }
  });
}

// Regression (was a defect): the device object's core had the silent logger, so nothing
// a device did reached Workers Logs.
describe("logging on Workers: JSON lines on console.log", () => {
  it("the device object logs the commit (ids, counts), never the transcript above debug", async () => {
    const hw = newDevice("logs");
    const sid = crypto.randomUUID();
    expect((await streamAudio(collect(hw, sid, 1, "a private transcript"))).code).toBeUndefined();
    expect((await streamAudio(commit(hw, sid))).code).toBeUndefined();
    const line = entries().find((e) => e.msg === "commit" && e.sessionId === sid);
    expect(line).toMatchObject({ level: "info", hardwareId: hw, sessionId: sid });
    expect(typeof line?.time).toBe("string");
    expect(lines.join("\n")).not.toContain("private transcript");
  });

  it("a limit set above what Durable Object storage holds is lowered, and logged", async () => {
    const res = await worker.fetch(new Request("https://ptt.test/"), {
      ...env,
      PTT_MAX_AUDIO_BYTES_PER_SESSION: String(4 * 1024 * 1024),
      PTT_MAX_SCREENSHOT_BYTES: "1000",
    });
    expect(res.status).toBe(200);
    const lowered = entries().filter((e) => e.level === "warn");
    expect(lowered).toEqual([
      expect.objectContaining({ setting: "PTT_MAX_AUDIO_BYTES_PER_SESSION: 4194304 -> 1048576" }),
    ]);
  });
});
