import { createJoseVerifier } from "../../auth/jose-verifier.js";
import { mountDemo } from "../../bridge/demo/routes.js";
import {
  type BridgeConnection,
  createBridgeHandlers,
} from "../../bridge/server/bridge-connection.js";
import { BRIDGE_PATH, BridgeHub, type BridgeUpgrade } from "../../bridge/server/bridge-hub.js";
import { configFromEnv, requireGrpcPort } from "../../core/env-config.js";
import { createFetchApp } from "../../core/fetch-app.js";
import { createJsonLogger } from "../../core/json-logger.js";
import { createPttCore } from "../../core/ptt-core.js";
import { finishReplies } from "../../core/shutdown.js";
import { listenH2c } from "../node/h2c-server.js";

// The few Bun APIs used here, declared rather than importing bun-types (like hono does).
interface BunSocket {
  data: { upgrade: BridgeUpgrade; conn?: BridgeConnection };
  /** > 0: bytes sent; -1: queued (backpressure); 0: dropped (past backpressureLimit). */
  send(data: Uint8Array): number;
  close(code?: number, reason?: string): void;
  getBufferedAmount(): number;
  /** Stop / resume reading the socket; absent from older Bun (the bridge then refuses calls). */
  pause?(): void;
  resume?(): void;
}
interface BunServer {
  port: number;
  hostname: string;
  upgrade(req: Request, options: { data: BunSocket["data"]; headers?: HeadersInit }): boolean;
  stop(closeActive?: boolean): void;
}
declare const Bun: {
  serve(options: {
    port: number;
    hostname: string;
    fetch(req: Request, server: BunServer): Promise<Response> | Response | undefined;
    websocket: {
      maxPayloadLength: number;
      backpressureLimit: number;
      open(ws: BunSocket): void;
      message(ws: BunSocket, msg: string | Uint8Array): void;
      close(ws: BunSocket): void;
      drain(ws: BunSocket): void;
    };
  }): BunServer;
};

const config = configFromEnv(process.env, "other", { jwtVerifier: createJoseVerifier });
const logger = createJsonLogger((line) => process.stdout.write(`${line}\n`), config.logLevel);
const core = createPttCore({ ...config.core, logger });
const shutdown = new AbortController();
const app = createFetchApp(core, { shutdownSignal: shutdown.signal, extend: mountDemo });
const hub = new BridgeHub(createBridgeHandlers(core));

const server = Bun.serve({
  port: config.port,
  hostname: config.host,
  fetch(req, srv) {
    if (new URL(req.url).pathname !== BRIDGE_PATH) return app(req);
    const upgrade = hub.checkRequest(req);
    if (upgrade instanceof Response) return upgrade;
    const headers = upgrade.protocol ? { "sec-websocket-protocol": upgrade.protocol } : undefined;
    if (srv.upgrade(req, { data: { upgrade }, headers })) return undefined;
    return new Response("expected a WebSocket upgrade\n", { status: 426 });
  },
  websocket: {
    // Bun closes over-size messages with 1009 itself.
    maxPayloadLength: hub.handlers.options.maxFrameBytes,
    // Bun drops what is sent past this (send() returns 0; the connection then closes with
    // 1013): kept above the bridge's own cap, which closes a client that does not read first.
    backpressureLimit: 2 * hub.handlers.options.maxBufferedBytes,
    open(ws) {
      ws.data.conn = hub.connect(ws.data.upgrade, {
        send: (bytes) => ws.send(bytes) !== 0,
        close: (code, reason) => ws.close(code, reason),
        bufferedAmount: () => ws.getBufferedAmount(),
        drainSignal: true,
        pauseReading: ws.pause && (() => ws.pause?.()),
        resumeReading: ws.resume && (() => ws.resume?.()),
      });
    },
    message: (ws, msg) => ws.data.conn?.receive(msg),
    close: (ws) => ws.data.conn?.closedByPeer(),
    drain: (ws) => ws.data.conn?.drained(),
  },
});

// Bun.serve cannot send HTTP trailers: real gRPC gets its own node:http2 port.
const grpc = await listenH2c(core, requireGrpcPort(config), config.host, shutdown.signal);
const url = `http://${server.hostname}:${server.port}`;
logger.info("ptt-edge listening", { runtime: "bun", url, grpc: grpc.url });
process.stderr.write(
  `ptt-edge listening on ${url}\n  Connect + gRPC-Web (HTTP/1.1), bridge ${url.replace("http", "ws")}/v1/bridge; /healthz /readyz /metrics\n  gRPC on ${grpc.url} (h2c; also Connect + gRPC-Web over HTTP/2)\n`,
);

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, async () => {
    logger.info("shutting down", { signal, graceMs: config.graceMs });
    server.stop(false);
    hub.stopAccepting(); // bridge sockets: running calls go on, new ones get unavailable
    const closing = grpc.close(config.graceMs);
    await finishReplies(core, config.graceMs);
    shutdown.abort();
    await hub.close(); // 1001, each once its last CallEnd is sent
    server.stop(true);
    await closing;
    process.exit(0);
  });
}
