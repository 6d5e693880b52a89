// `npm run start:bun`: ptt-edge on Bun from environment variables (README, Configuration).
import process from "node:process";
import { requireGrpcPort } from "../core/env-config.js";
import { serveBun } from "../runtimes/bun/serve.js";
import { start } from "./start.js";

await start(
  {
    env: process.env,
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    exit: (code) => process.exit(code),
    onSignal: (signal, fn) => process.once(signal, fn),
  },
  {
    runtime: "bun",
    serve: (server, config) => serveBun(server, { ...config, grpcPort: requireGrpcPort(config) }),
  },
);
