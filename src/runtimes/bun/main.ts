import { mountDemo } from "../../bridge/demo/routes.js";
import { BridgeConnection, createBridgeHandlers } from "../../bridge/server/bridge-connection.js";
import {
  bridgeRequestHeaders,
  offeredProtocols,
  refusedOrigin,
  selectProtocol,
} from "../../bridge/server/handshake.js";
import { configFromEnv } from "../../core/env-config.js";
import { createFetchApp } from "../../core/fetch-app.js";
import { createJsonLogger } from "../../core/json-logger.js";
import { createPttCore } from "../../core/ptt-core.js";
import { finishReplies } from "../../core/shutdown.js";
import { listenH2c } from "../node/h2c-server.js";

// The few Bun APIs used here, declared rather than importing bun-types (like hono does).
interface BunSocket {
  data: { headers: Headers; url: string; conn?: BridgeConnection };
  send(data: Uint8Array): number;
  close(code?: number, reason?: string): void;
  getBufferedAmount(): number;
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
      open(ws: BunSocket): void;
      message(ws: BunSocket, msg: string | Uint8Array): void;
      close(ws: BunSocket): void;
      drain(ws: BunSocket): void;
    };
  }): BunServer;
};

const config = configFromEnv(process.env);
const logger = createJsonLogger((line) => process.stdout.write(`${line}\n`), config.logLevel);
const core = createPttCore({ ...config.core, logger });
const shutdown = new AbortController();
const app = createFetchApp(core, { shutdownSignal: shutdown.signal, extend: mountDemo });
const bridge = createBridgeHandlers(core);

const server = Bun.serve({
  port: config.port,
  hostname: config.host,
  fetch(req, srv) {
    if (new URL(req.url).pathname !== "/v1/bridge") return app(req);
    const refused = refusedOrigin(req.headers, core.allowedOrigins);
    if (refused) return new Response(`${refused}\n`, { status: 403 });
    const protocol = selectProtocol(offeredProtocols(req.headers.get("sec-websocket-protocol")));
    const data = { headers: bridgeRequestHeaders(req.headers), url: req.url };
    const headers = protocol ? { "sec-websocket-protocol": protocol } : undefined;
    if (srv.upgrade(req, { data, headers })) return undefined;
    return new Response("expected a WebSocket upgrade\n", { status: 426 });
  },
  websocket: {
    // Bun closes over-size messages with 1009 itself.
    maxPayloadLength: bridge.options.maxFrameBytes,
    open(ws) {
      const conn = new BridgeConnection(
        bridge,
        {
          send: (bytes) => void ws.send(bytes),
          close: (code, reason) => ws.close(code, reason),
          bufferedAmount: () => ws.getBufferedAmount(),
        },
        ws.data.headers,
        ws.data.url,
      );
      ws.data.conn = conn;
      conn.open();
    },
    message: (ws, msg) => ws.data.conn?.receive(msg),
    close: (ws) => ws.data.conn?.closedByPeer(),
    drain: (ws) => ws.data.conn?.drained(),
  },
});

// Bun.serve cannot send HTTP trailers: real gRPC gets its own node:http2 port.
const grpcPort = Number(process.env.GRPC_PORT ?? (config.port === 0 ? 0 : config.port + 1));
const grpc = await listenH2c(core, grpcPort, config.host, shutdown.signal);
const url = `http://${server.hostname}:${server.port}`;
logger.info("ptt-edge listening", { runtime: "bun", url, grpc: grpc.url });
process.stderr.write(
  `ptt-edge listening on ${url}\n  Connect + gRPC-Web (HTTP/1.1), bridge ${url.replace("http", "ws")}/v1/bridge; /healthz /readyz /metrics\n  gRPC on ${grpc.url} (h2c; also Connect + gRPC-Web over HTTP/2)\n`,
);

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, async () => {
    logger.info("shutting down", { signal, graceMs: config.graceMs });
    server.stop(false);
    const closing = grpc.close(config.graceMs);
    await finishReplies(core, config.graceMs);
    shutdown.abort();
    server.stop(true);
    await closing;
    process.exit(0);
  });
}
