import { createJoseVerifier } from "../../auth/jose-verifier.js";
import { mountDemo } from "../../bridge/demo/routes.js";
import { createBridgeHandlers } from "../../bridge/server/bridge-connection.js";
import { BRIDGE_PATH, BridgeHub } from "../../bridge/server/bridge-hub.js";
import { configFromEnv, requireGrpcPort } from "../../core/env-config.js";
import { createFetchApp } from "../../core/fetch-app.js";
import { createJsonLogger } from "../../core/json-logger.js";
import { createDenoKvMemory } from "../../core/memory/deno-kv-memory.js";
import { DEFAULT_MEMORY_BOUNDS } from "../../core/memory/turns.js";
import { createPttCore } from "../../core/ptt-core.js";
import { finishReplies } from "../../core/shutdown.js";
import { createDenoKvStore, type DenoKv } from "../../core/stores/deno-kv-store.js";
import { systemClock } from "../../core/system-clock.js";
import { listenH2c } from "../node/h2c-server.js";

// The few Deno APIs used here, declared rather than pulling Deno's types into the Node build.
interface DenoServer {
  addr: { hostname: string; port: number };
  shutdown(): Promise<void>;
}
declare const Deno: {
  env: { toObject(): Record<string, string> };
  serve(
    options: { port: number; hostname: string; onListen?: () => void },
    handler: (req: Request) => Response | Promise<Response>,
  ): DenoServer;
  upgradeWebSocket(
    req: Request,
    options?: { protocol?: string },
  ): { socket: WebSocket; response: Response };
  addSignalListener(signal: "SIGTERM" | "SIGINT", fn: () => void): void;
  exit(code: number): never;
  openKv(path?: string): Promise<DenoKv>;
  stdout: { writeSync(bytes: Uint8Array): number };
  stderr: { writeSync(bytes: Uint8Array): number };
};

const env = Deno.env.toObject();
const config = configFromEnv(env, "other", { jwtVerifier: createJoseVerifier });
const utf8 = new TextEncoder();
const logger = createJsonLogger(
  (line) => Deno.stdout.writeSync(utf8.encode(`${line}\n`)),
  config.logLevel,
);
// PTT_STORE=deno-kv: sessions in Deno KV. PTT_DENO_KV_PATH: a file (needs --allow-read and
// --allow-write for it), ":memory:" or a KV Connect URL; unset: Deno's default database (on
// Deno Deploy, the project's own). Needs --unstable-kv (deno.json turns it on).
const kv = config.store === "deno-kv" ? await Deno.openKv(env.PTT_DENO_KV_PATH || undefined) : null;
const core = createPttCore({
  ...config.core,
  logger,
  store: kv ? (deps) => createDenoKvStore({ kv, ...deps }) : undefined,
  // The voice workflow's per-device memory lives beside the sessions: it survives restarts too.
  memory: kv
    ? createDenoKvMemory({
        kv,
        bounds: config.core.voice?.memory ?? DEFAULT_MEMORY_BOUNDS,
        clock: systemClock,
      })
    : undefined,
});
const shutdown = new AbortController();
const app = createFetchApp(core, { shutdownSignal: shutdown.signal, extend: mountDemo });
const hub = new BridgeHub(createBridgeHandlers(core));

/**
 * Deno's WebSocket has no drain event (the connection polls bufferedAmount while replies wait)
 * and cannot pause reading (the connection refuses calls past its limits instead). Nor does it
 * take a message size limit: a message up to 64 MiB is buffered before receive() closes 1009.
 */
function acceptBridge(req: Request): Response {
  const upgrade = hub.checkRequest(req);
  if (upgrade instanceof Response) return upgrade;
  const { protocol } = upgrade;
  const { socket, response } = Deno.upgradeWebSocket(req, protocol ? { protocol } : {});
  socket.binaryType = "arraybuffer";
  socket.onopen = () => {
    const conn = hub.connect(upgrade, {
      send: (bytes) => socket.send(bytes as Uint8Array<ArrayBuffer>),
      close: (code, reason) => socket.close(code, reason),
      bufferedAmount: () => socket.bufferedAmount,
    });
    socket.onmessage = (ev) =>
      conn.receive(typeof ev.data === "string" ? ev.data : new Uint8Array(ev.data));
    socket.onclose = () => conn.closedByPeer();
  };
  return response;
}

/** Shutting down: Deno.serve cannot stop listening without closing the bridge sockets. */
let draining = false;
const server = Deno.serve(
  { port: config.port, hostname: config.host, onListen: () => {} },
  (req) => {
    if (draining) return new Response("shutting down\n", { status: 503 });
    const bridge = new URL(req.url).pathname === BRIDGE_PATH;
    return bridge && req.headers.get("upgrade")?.toLowerCase() === "websocket"
      ? acceptBridge(req)
      : app(req);
  },
);

// Deno.serve cannot send HTTP trailers over cleartext: real gRPC gets its own node:http2 port.
const grpc = await listenH2c(core, requireGrpcPort(config), config.host, shutdown.signal);
const url = `http://${server.addr.hostname}:${server.addr.port}`;
logger.info("ptt-edge listening", { runtime: "deno", url, grpc: grpc.url });
Deno.stderr.writeSync(
  utf8.encode(
    `ptt-edge listening on ${url}\n  Connect + gRPC-Web (HTTP/1.1), bridge ${url.replace("http", "ws")}/v1/bridge; /healthz /readyz /metrics\n  gRPC on ${grpc.url} (h2c; also Connect + gRPC-Web over HTTP/2)\n`,
  ),
);

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.addSignalListener(signal, async () => {
    logger.info("shutting down", { signal, graceMs: config.graceMs });
    // New requests get 503 and new bridge calls unavailable; running replies get the grace
    // period. server.shutdown() comes last: it closes every bridge socket at once (1001).
    draining = true;
    hub.stopAccepting();
    const grpcClosed = grpc.close(config.graceMs);
    await finishReplies(core, config.graceMs);
    shutdown.abort();
    await hub.close(); // 1001, each once its last CallEnd is sent
    // Deno's shutdown waits for every close handshake, which a client that does not read never
    // completes (its Close frame waits behind the data): exit after a second regardless.
    await Promise.race([server.shutdown(), new Promise((r) => setTimeout(r, 1000))]);
    await grpcClosed;
    Deno.exit(0);
  });
}
