import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * A real redis-server (Debian's package) for tests: its own free port, persistence off, its
 * own scratch directory. `stop()` and `start()` again keep the port, so a test can take Redis
 * away mid-call and bring it back where the clients look for it (empty: nothing was saved).
 */
export interface RedisServer {
  readonly port: number;
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  /** Starts it again after stop() (same port, empty data set). */
  start(): Promise<void>;
  /** SIGKILL: the server vanishes with its connections, the way a crash or a cut link looks. */
  stop(): Promise<void>;
  /** Stops it for good and removes its directory. */
  close(): Promise<void>;
}

const BINARY = "redis-server";

async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = probe.address() as net.AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

function launch(port: number, dir: string): Promise<ChildProcess> {
  const child = spawn(
    BINARY,
    [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      dir,
      "--daemonize",
      "no",
      // Tests open and drop many clients; keep the log to what says it is ready or failed.
      "--loglevel",
      "notice",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`redis-server did not start in 15 s on port ${port}:\n${out}`));
    }, 15_000);
    const onData = (d: Buffer) => {
      out += d;
      if (!out.includes("Ready to accept connections")) return;
      clearTimeout(timer);
      child.removeAllListeners("exit");
      child.stdout?.off("data", onData);
      // Keep draining its output so a chatty server never blocks on a full pipe.
      child.stdout?.resume();
      child.stderr?.resume();
      resolve(child);
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", (d) => {
      out += d;
    });
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(
        new Error(
          `cannot run ${BINARY} (${err.message}); install the Debian package redis-server (.ci/run does)`,
        ),
      );
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited with ${code} before it was ready:\n${out}`));
    });
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

/** Starts a redis-server on a free loopback port (retries if another process took the port). */
export async function startRedisServer(): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), "ptt-redis-"));
  let port = 0;
  let child: ChildProcess | undefined;
  for (let attempt = 1; !child; attempt++) {
    port = await freePort();
    try {
      child = await launch(port, dir);
    } catch (err) {
      if (attempt >= 3) throw err;
    }
  }
  let current: ChildProcess | undefined = child;
  const stop = async () => {
    const c = current;
    current = undefined;
    if (!c) return;
    const done = exited(c);
    c.kill("SIGKILL");
    await done;
  };
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    async start() {
      if (current) return;
      // The port was just freed by SIGKILL: the kernel may hold it for a moment.
      for (let attempt = 1; ; attempt++) {
        try {
          current = await launch(port, dir);
          return;
        } catch (err) {
          if (attempt >= 20) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    },
    stop,
    async close() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
