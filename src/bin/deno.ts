// `npm run start:deno`: ptt-edge on Deno from environment variables (README, Configuration).
import { requireGrpcPort } from "../core/env-config.js";
import { createDenoKvMemory } from "../core/memory/deno-kv-memory.js";
import { DEFAULT_MEMORY_BOUNDS } from "../core/memory/turns.js";
import { systemClock } from "../core/system-clock.js";
import { createDenoKvStore, type DenoKv } from "../drivers/deno-kv/deno-kv-driver.js";
import { createDenoKvJournal } from "../drivers/deno-kv/deno-kv-journal.js";
import { serveDeno } from "../runtimes/deno/serve.js";
import { start } from "./start.js";

// The few Deno APIs used here, declared rather than pulling Deno's types into the Node build.
declare const Deno: {
  env: { toObject(): Record<string, string> };
  addSignalListener(signal: "SIGTERM" | "SIGINT", fn: () => void): void;
  exit(code: number): never;
  openKv(path?: string): Promise<DenoKv & { close(): void }>;
  stdout: { writeSync(bytes: Uint8Array): number };
  stderr: { writeSync(bytes: Uint8Array): number };
};

const utf8 = new TextEncoder();
const env = Deno.env.toObject();

await start(
  {
    env,
    stdout: (text) => void Deno.stdout.writeSync(utf8.encode(text)),
    stderr: (text) => void Deno.stderr.writeSync(utf8.encode(text)),
    exit: (code) => Deno.exit(code),
    onSignal: (signal, fn) => Deno.addSignalListener(signal, fn),
  },
  {
    runtime: "deno",
    // PTT_STORE=deno-kv: sessions in Deno KV. PTT_DENO_KV_PATH: a file (needs --allow-read and
    // --allow-write for it), ":memory:" or a KV Connect URL; unset: Deno's default database (on
    // Deno Deploy, the project's own). Needs --unstable-kv (deno.json turns it on). The server's
    // shutdown closes the store, and with it the database.
    async openStore(config) {
      if (config.store !== "deno-kv") return {};
      const kv = await Deno.openKv(env.PTT_DENO_KV_PATH || undefined);
      return {
        store: (deps) => {
          const store = createDenoKvStore({ kv, ...deps });
          // The store leaves the database to its opener: close both, in that order.
          return { ...store, close: () => store.close().then(() => kv.close()) };
        },
        // The voice workflow's per-device memory lives beside the sessions: it survives
        // restarts too.
        memory: createDenoKvMemory({
          kv,
          bounds: config.core.voice?.memory ?? DEFAULT_MEMORY_BOUNDS,
          clock: systemClock,
        }),
        // Replies are journaled there too: a resume reaches any process of the database.
        journal: createDenoKvJournal({ kv }),
      };
    },
    serve: (server, config) => serveDeno(server, { ...config, grpcPort: requireGrpcPort(config) }),
  },
);
