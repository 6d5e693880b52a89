#!/usr/bin/env node
// `npm start`: ptt-edge on Node from environment variables (README, Configuration).
import process from "node:process";
import { serveNode } from "../runtimes/node/server.js";
import { start } from "./start.js";

await start(
  {
    env: process.env,
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    exit: (code) => process.exit(code),
    onSignal: (signal, fn) => process.once(signal, fn),
  },
  { runtime: "node", serve: (server, config) => serveNode(server, config) },
);
