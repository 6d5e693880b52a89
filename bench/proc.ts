// Starting and stopping the servers under test: each pinned to one core when taskset exists,
// each telling its port on stdout ("LISTENING <port>") or, for ptt-edge on Bun and Deno, in
// their start-up lines on stderr.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { resolve } from "node:path";

export const ROOT = resolve(import.meta.dirname, "..");
export const SERVER_CORE = "1";
export const CLIENT_CORE = "0";

export type Runtime = "node" | "bun" | "deno";

const NODE = process.execPath;
const BUN = resolve(ROOT, "node_modules/.bin/bun");
const DENO = resolve(ROOT, "node_modules/deno/deno");
const DENO_FLAGS = ["run", "--allow-net", "--allow-env", "--allow-read", "--allow-sys"];

export const hasTaskset = (() => {
  try {
    execFileSync("taskset", ["-c", "0", "true"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

/**
 * The command line that runs a script on a runtime: on Node, TypeScript through tsx's loader
 * and JavaScript (the build in dist/, as `npm start` runs it) as it is.
 */
export function runtimeCommand(
  runtime: Runtime,
  script: string,
  nodeFlags: string[] = [],
): string[] {
  const file = resolve(ROOT, script);
  if (runtime === "node") {
    return file.endsWith(".ts")
      ? [NODE, ...nodeFlags, "--import", "tsx", file]
      : [NODE, ...nodeFlags, file];
  }
  if (runtime === "bun") return [BUN, file];
  return [DENO, ...DENO_FLAGS, file];
}

/** Pins a command to `core` when taskset is there. */
export function pinned(core: string, argv: string[]): string[] {
  return hasTaskset ? ["taskset", "-c", core, ...argv] : argv;
}

export interface Server {
  name: string;
  runtime: Runtime;
  /** The node:http2 (gRPC) port. */
  port: number;
  /** Where HTTP/1.1, the bridge and /metrics are (ptt-edge on Bun and Deno: another port). */
  httpPort: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

export interface StartOptions {
  name: string;
  runtime: Runtime;
  script: string;
  env?: Record<string, string>;
  nodeFlags?: string[];
  /** Opens an IPC channel (Node only): the memory probe. */
  ipc?: boolean;
}

export function startServer(o: StartOptions): Promise<Server> {
  const [cmd, ...args] = pinned(SERVER_CORE, runtimeCommand(o.runtime, o.script, o.nodeFlags));
  const child = spawn(cmd as string, args, {
    cwd: ROOT,
    env: {
      ...process.env,
      PORT: "0",
      GRPC_PORT: "0",
      DENO_NO_UPDATE_CHECK: "1",
      PTT_LOG_LEVEL: "warn",
      ...o.env,
    },
    stdio: ["ignore", "pipe", "pipe", ...(o.ipc ? (["ipc"] as const) : [])],
  });
  let out = "";
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`${o.name} did not start:\n${out}`)), 60_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${o.name} exited with ${code}:\n${out}`));
    });
    const onOutput = (d: Buffer) => {
      if (out.length < 64_000) out += d;
      const plain = /LISTENING (\d+)/.exec(out);
      const ptt = /listening on http:\/\/[^:]+:(\d+)/.exec(out);
      const grpc = /gRPC on http:\/\/[^:]+:(\d+)/.exec(out);
      // Node's ptt-edge (npm start): gRPC on the same port, said once the whole line is out.
      const samePort = /gRPC \(h2c\) on the same port/.test(out);
      let port: number | undefined;
      let httpPort: number | undefined;
      if (plain) port = httpPort = Number(plain[1]);
      else if (ptt && grpc) {
        port = Number(grpc[1]);
        httpPort = Number(ptt[1]);
      } else if (ptt && samePort) port = httpPort = Number(ptt[1]);
      if (port === undefined || httpPort === undefined) return;
      clearTimeout(timer);
      child.removeAllListeners("exit");
      child.stdout?.off("data", onOutput);
      child.stderr?.off("data", onOutput);
      // Keep draining (a full pipe would stall the server), and keep the tail for a crash report.
      let tail = "";
      const keep = (d: Buffer) => {
        tail = (tail + d).slice(-4000);
      };
      child.stdout?.on("data", keep);
      child.stderr?.on("data", keep);
      let stopping = false;
      child.once("exit", (code, signal) => {
        if (!stopping)
          process.stderr.write(`[bench] ${o.name} died (${code ?? signal}):\n${tail}\n`);
      });
      resolvePromise({
        name: o.name,
        runtime: o.runtime,
        port,
        httpPort,
        child,
        stop: () =>
          new Promise((done) => {
            stopping = true;
            if (child.exitCode !== null || child.signalCode !== null) return done();
            const kill = setTimeout(() => child.kill("SIGKILL"), 5_000);
            child.once("exit", () => {
              clearTimeout(kill);
              done();
            });
            child.kill("SIGTERM");
          }),
      });
    };
    child.stdout?.on("data", onOutput);
    child.stderr?.on("data", onOutput);
  });
}
