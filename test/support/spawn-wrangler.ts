import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "../..");

export interface SpawnedWorker {
  url: string;
  process: ChildProcess;
  output: () => string;
  stop(): Promise<void>;
}

/** A free loopback port (wrangler needs one named up front). */
export function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => done(port));
    });
  });
}

/**
 * `wrangler dev --local`: the Worker and its Durable Objects in the local workerd,
 * state in `persistTo` (so a restart on the same folder keeps the sessions).
 */
export async function spawnWrangler(
  vars: Record<string, string>,
  persistTo: string,
): Promise<SpawnedWorker> {
  const port = await freePort();
  const inspector = await freePort();
  const args = [
    "dev",
    "--local",
    "--ip",
    "127.0.0.1",
    "--port",
    String(port),
    "--inspector-port",
    String(inspector),
    "--persist-to",
    persistTo,
    "--show-interactive-dev-session=false",
    ...Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}:${v}`]),
  ];
  const child = spawn(resolve(ROOT, "node_modules/.bin/wrangler"), args, {
    cwd: ROOT,
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1", CI: "true" },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true, // its own process group: stop() ends wrangler and workerd together
  });
  let out = "";
  const onData = (d: Buffer) => {
    out += d;
  };
  child.stdout?.on("data", onData);
  child.stderr?.on("data", onData);
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`wrangler exited ${child.exitCode}:\n${out}`);
    if (Date.now() > deadline) {
      process.kill(-(child.pid as number), "SIGKILL");
      throw new Error(`wrangler dev did not become ready in 60 s:\n${out}`);
    }
    const ok = await fetch(`${url}/healthz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  return {
    url,
    process: child,
    output: () => out,
    stop: () =>
      new Promise<void>((done) => {
        if (child.exitCode !== null) return done();
        child.once("exit", () => done());
        try {
          process.kill(-(child.pid as number), "SIGTERM");
        } catch {
          done();
        }
        setTimeout(() => {
          try {
            process.kill(-(child.pid as number), "SIGKILL");
          } catch {}
        }, 5000).unref();
      }),
  };
}
