import { type ChildProcess, spawn } from "node:child_process";
import * as path from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterEach, describe, expect, it } from "vitest";
import { StreamingService } from "../../src/gen/streaming_pb.js";
import {
  collect,
  commit,
  endMessage,
  newDevice,
  newSession,
  replyText,
  streamAudio,
} from "../contract/calls.js";

// The newcomer path: `PORT=0 npm start` (tsx src/bin/node.ts) as a real process.
const ROOT = path.resolve(import.meta.dirname, "../..");
const TSX = path.join(ROOT, "node_modules", ".bin", "tsx");
const MAIN = path.join("src", "bin", "node.ts");

interface Running {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Exit code (or signal name) once the process has exited. */
  exited: Promise<number | string>;
}

const children: ChildProcess[] = [];
afterEach(() => {
  // tsx runs the entry point in a child of its own: a test that fails midway kills the whole group.
  for (const child of children.splice(0)) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }
});

/** The caller's environment with nothing of ours in it, plus `extra`. */
function envWith(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith("PTT_") && k !== "PORT" && k !== "HOST") env[k] = v;
  }
  return { ...env, ...extra };
}

function run(extra: Record<string, string>): Running {
  // Own process group, so cleanup can reach tsx's child; signals below go to tsx alone,
  // as from a process manager.
  const child = spawn(TSX, [MAIN], { cwd: ROOT, env: envWith(extra), detached: true });
  children.push(child);
  let out = "";
  let err = "";
  child.stdout?.setEncoding("utf8").on("data", (d: string) => {
    out += d;
  });
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    err += d;
  });
  const exited = new Promise<number | string>((resolve) => {
    child.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown"));
  });
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Resolves with the server's URL from the `ptt-edge listening on ...` line on stderr. */
function listeningUrl(p: Running, timeoutMs = 15_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const m = /ptt-edge listening on (http:\/\/\S+)/.exec(p.stderr());
      if (m) {
        clearInterval(poll);
        clearTimeout(timer);
        resolve(m[1] as string);
      }
    };
    const poll = setInterval(check, 20);
    const timer = setTimeout(() => {
      clearInterval(poll);
      reject(new Error(`no listening line in ${timeoutMs} ms; stderr: ${p.stderr()}`));
    }, timeoutMs);
    p.exited.then((code) => {
      check();
      clearInterval(poll);
      clearTimeout(timer);
      reject(new Error(`exited ${code} before listening; stderr: ${p.stderr()}`));
    });
  });
}

function within<T>(p: Promise<T>, ms: number): Promise<T | "timeout"> {
  return Promise.race([p, new Promise<"timeout">((r) => setTimeout(() => r("timeout"), ms))]);
}

describe("node: npm start (tsx src/bin/node.ts)", () => {
  it("starts with PORT=0, serves a round trip over gRPC and exits 0 on SIGTERM", async () => {
    const p = run({ PORT: "0" });
    const url = await listeningUrl(p);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(url).not.toMatch(/:0$/);

    const client = createClient(StreamingService, createGrpcTransport({ baseUrl: url }));
    const hw = newDevice("start");
    const sid = newSession();
    expect((await streamAudio(client, collect(hw, sid, 1, "hello "))).code).toBeUndefined();
    expect((await streamAudio(client, collect(hw, sid, 2, "world"))).code).toBeUndefined();
    const r = await streamAudio(client, commit(hw, sid));
    expect(r.code).toBeUndefined();
    expect(replyText(r)).toBe("hello world");
    expect(endMessage(r)).toBe("RESPONSE_COMPLETED");

    const health = await fetch(`${url}/healthz`);
    expect(health.status).toBe(200);

    p.child.kill("SIGTERM");
    expect(await within(p.exited, 5_000)).toBe(0);
    // Logs are JSON lines on stdout, and the transcript is not among them at info level.
    const lines = p.stdout().trim().split("\n");
    for (const line of lines) expect(() => JSON.parse(line)).not.toThrow();
    expect(p.stdout()).toContain('"msg":"shutting down"');
    expect(p.stdout()).not.toContain("hello");
  }, 30_000);

  it("refuses to start on an invalid variable and names it", async () => {
    const p = run({ PORT: "0", PTT_MAX_CHUNKS_PER_SESSION: "abc" });
    const code = await within(p.exited, 15_000);
    expect(code).not.toBe("timeout");
    expect(code).not.toBe(0);
    expect(`${p.stderr()}${p.stdout()}`).toContain("PTT_MAX_CHUNKS_PER_SESSION");
    expect(p.stderr()).not.toContain("ptt-edge listening");
  }, 30_000);

  it("refuses an unknown PTT_BARGE_IN value and names it", async () => {
    const p = run({ PORT: "0", PTT_BARGE_IN: "sometimes" });
    const code = await within(p.exited, 15_000);
    expect(code).not.toBe("timeout");
    expect(code).not.toBe(0);
    expect(`${p.stderr()}${p.stdout()}`).toContain("PTT_BARGE_IN");
  }, 30_000);

  // Regression (was a bug): PORT is read as any integer >= 0 (env-config.ts, no upper bound), so
  // PORT=70000 passes configuration and dies in net.listen with ERR_SOCKET_BAD_PORT and an
  // "options.port" stack that never names the PORT variable. Expected: rejected like the
  // other variables ("PORT: must be an integer 0..65535; got \"70000\"").
  it("refuses an out-of-range PORT and names the variable", async () => {
    const p = run({ PORT: "70000" });
    const code = await within(p.exited, 15_000);
    expect(code).not.toBe("timeout");
    expect(code).not.toBe(0);
    expect(`${p.stderr()}${p.stdout()}`).toMatch(/\bPORT\b/);
  }, 30_000);
});
