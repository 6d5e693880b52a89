import { spawn } from "node:child_process";
import * as net from "node:net";
import { resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RUNTIME_COMMANDS } from "../support/spawn-runtime.js";

// One lifecycle for every runtime (src/bin/start.ts): a bad setting or a busy port is one line
// on stderr, no stack trace, and exit code 2, the same on Node, Bun and Deno.

const ROOT = resolve(import.meta.dirname, "../..");
const COMMANDS: Record<string, readonly string[]> = RUNTIME_COMMANDS;

function run(
  runtime: string,
  env: Record<string, string>,
): Promise<{ code: number | null; stderr: string }> {
  const [cmd, ...args] = COMMANDS[runtime] as string[];
  const clean: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith("PTT_") && k !== "PORT" && k !== "GRPC_PORT" && k !== "HOST") clean[k] = v;
  }
  const child = spawn(cmd as string, args, {
    cwd: ROOT,
    env: { ...clean, DENO_NO_UPDATE_CHECK: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    stderr += d;
  });
  const kill = setTimeout(() => child.kill("SIGKILL"), 30_000);
  return new Promise((done) => {
    child.once("exit", (code) => {
      clearTimeout(kill);
      done({ code, stderr });
    });
  });
}

describe.each(["node", "bun", "deno"])(
  "%s: a failed start is one line and exit code 2",
  (runtime) => {
    let busy: net.Server;
    let busyPort: number;

    beforeAll(async () => {
      busy = net.createServer();
      await new Promise<void>((r) => busy.listen(0, "127.0.0.1", r));
      busyPort = (busy.address() as net.AddressInfo).port;
    });
    afterAll(async () => {
      await new Promise((r) => busy.close(r));
    });

    it("a bad setting names the variable", async () => {
      const { code, stderr } = await run(runtime, { PORT: "0", PTT_BARGE_IN: "sometimes" });
      expect(code).toBe(2);
      expect(stderr).toBe(
        'ptt-edge: invalid configuration: PTT_BARGE_IN: must be one of press, commit, off; got "sometimes"\n',
      );
    }, 40_000);

    it("a typo'd variable is named", async () => {
      const { code, stderr } = await run(runtime, { PORT: "0", PTT_BARGEIN: "off" });
      expect(code).toBe(2);
      expect(stderr.split("\n")).toHaveLength(2);
      expect(stderr).toMatch(/^ptt-edge: invalid configuration: PTT_BARGEIN: unknown setting/);
    }, 40_000);

    it("a busy port names the address", async () => {
      const { code, stderr } = await run(runtime, { PORT: String(busyPort), GRPC_PORT: "0" });
      expect(code).toBe(2);
      expect(stderr.split("\n")).toHaveLength(2);
      expect(stderr).toMatch(new RegExp(`^ptt-edge: cannot listen on 127\\.0\\.0\\.1:${busyPort}`));
      expect(stderr).not.toContain("    at ");
    }, 40_000);

    if (runtime !== "node") {
      it("a busy gRPC port names it too", async () => {
        const { code, stderr } = await run(runtime, { PORT: "0", GRPC_PORT: String(busyPort) });
        expect(code).toBe(2);
        expect(stderr.split("\n")).toHaveLength(2);
        expect(stderr).toMatch(new RegExp(`^ptt-edge: cannot listen on .*gRPC ${busyPort}`));
      }, 40_000);
    }
  },
);
