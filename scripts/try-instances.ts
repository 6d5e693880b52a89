// `npm run try:instances`: a redis-server (Debian's redis-server package) and two Node instances
// sharing it, on PORT and PORT+1 (default 8080, 8081). Ctrl-C stops all three.
import { type ChildProcess, spawn } from "node:child_process";
import { resolve } from "node:path";

const root = resolve(import.meta.dirname, "..");
const base = Number(process.env.PORT ?? 8080);
const redisPort = Number(process.env.REDIS_PORT ?? 6390);
const children: ChildProcess[] = [];

function run(cmd: string, args: string[], env: Record<string, string> = {}): ChildProcess {
  const child = spawn(cmd, args, { cwd: root, stdio: "inherit", env: { ...process.env, ...env } });
  child.on("error", (err) => {
    console.error(`cannot run ${cmd}: ${err.message}`);
    stop(1);
  });
  children.push(child);
  return child;
}

function stop(code = 0): void {
  for (const child of children) child.kill("SIGTERM");
  setTimeout(() => process.exit(code), 500);
}

run("redis-server", ["--port", String(redisPort), "--save", "", "--appendonly", "no"]);
for (const port of [base, base + 1]) {
  run(process.execPath, ["--import", "tsx", "src/bin/node.ts"], {
    PORT: String(port),
    PTT_STORE: `redis://127.0.0.1:${redisPort}`,
    PTT_LOG_LEVEL: "warn",
  });
}
console.error(
  `two instances sharing redis://127.0.0.1:${redisPort}: http://127.0.0.1:${base} and http://127.0.0.1:${base + 1}\n` +
    "send a hold's chunks to either, COMMIT or interrupt on the other; Ctrl-C stops all three",
);
process.on("SIGINT", () => stop());
process.on("SIGTERM", () => stop());
