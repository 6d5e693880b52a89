import * as http from "node:http";
import * as http2 from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { getRequestListener } from "@hono/node-server";
import { mountDemo } from "../../bridge/demo/routes.js";
import { createBridgeHandlers } from "../../bridge/server/bridge-connection.js";
import { createHttpApp } from "../../core/http-app.js";
import { createPttCore, type PttCore, type PttCoreOptions } from "../../core/ptt-core.js";
import { finishReplies } from "../../core/shutdown.js";
import { routes } from "../../core/streaming-service.js";
import { createNodeBridge } from "./bridge-ws.js";
import { grpcFastPathFromEnv, installStreamHandler, pttGrpcFastPath } from "./grpc-fast-path.js";
import { createOnePortServer } from "./one-port.js";

type Fallback = NonNullable<Parameters<typeof connectNodeAdapter>[0]["fallback"]>;

export interface NodeServerOptions {
  /** 0 picks a free port. Default 8080. */
  port?: number;
  host?: string;
  config?: PttCoreOptions;
  /** How long running replies may finish on shutdown before they are cancelled. */
  graceMs?: number;
  /**
   * Serve uncompressed binary gRPC calls through the fast path (grpc-fast-path.ts) instead of
   * connect's pipeline. Default: on, unless PTT_GRPC_FAST_PATH=0.
   */
  grpcFastPath?: boolean;
}

export interface NodeServer {
  readonly url: string;
  readonly port: number;
  readonly core: PttCore;
  /** Graceful: stop accepting, let replies finish up to graceMs, cancel the rest, close. */
  close(graceMs?: number): Promise<void>;
}

/**
 * ptt-edge on Node: gRPC (h2c), Connect (HTTP/1.1 and HTTP/2), gRPC-Web and the
 * WebSocket bridge (/v1/bridge) on one port, with the Hono app for /healthz,
 * /readyz and /metrics.
 */
export async function startNodeServer(options: NodeServerOptions = {}): Promise<NodeServer> {
  const core = createPttCore(options.config);
  const shutdown = new AbortController();
  const app = createHttpApp(core);
  mountDemo(app);
  const handler = connectNodeAdapter({
    routes: routes(core),
    readMaxBytes: core.limits.maxRequestBytes,
    shutdownSignal: shutdown.signal,
    // Hono's listener takes both request kinds; its types name the http2 ones differently.
    fallback: getRequestListener(app.fetch) as unknown as Fallback,
  });
  const bridge = createNodeBridge(createBridgeHandlers(core));
  let draining = false;
  // After close() starts, a kept-alive HTTP/1.1 connection may still bring a request: answer
  // 503 (UNAVAILABLE to Connect and gRPC-Web clients) and close it, before the store is touched.
  const h1 = http.createServer((req, res) => {
    if (!draining) return void handler(req, res);
    res.writeHead(503, { connection: "close", "content-type": "text/plain" });
    res.end("shutting down\n");
  });
  h1.on("upgrade", (req, socket, head) => {
    if (bridge.upgrade(req, socket, head)) return;
    // A WebSocket client told why (ws: "Unexpected server response: 404"), not a reset socket.
    socket.end(
      "HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nno WebSocket here: the bridge is at /v1/bridge\n",
    );
  });
  const h2 = http2.createServer({}, handler);
  if (options.grpcFastPath ?? grpcFastPathFromEnv(process.env)) {
    installStreamHandler(h2, pttGrpcFastPath(core, shutdown.signal));
  }
  const sessions = new Set<http2.Http2Session>();
  const sockets = new Set<Socket>();
  h2.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });
  h1.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  const { tcp, destroyUndecided } = createOnePortServer(h1, h2);
  await new Promise<void>((resolve, reject) => {
    tcp.once("error", reject);
    tcp.listen(options.port ?? 8080, options.host ?? "127.0.0.1", () => resolve());
  });
  const { port, address, family } = tcp.address() as AddressInfo;
  const hostPart = family === "IPv6" ? `[${address}]` : address;
  let closing: Promise<void> | undefined;

  async function close(graceMs = options.graceMs ?? 10_000): Promise<void> {
    draining = true;
    tcp.close();
    destroyUndecided();
    // Bridge sockets stay open for their running replies, but take no new call (unavailable).
    bridge.stopAccepting();
    // Idle HTTP/2 connections get GOAWAY now; busy ones finish their streams first.
    for (const s of sessions) s.close();
    h1.closeIdleConnections();
    await finishReplies(core, graceMs);
    shutdown.abort();
    // After the replies: each bridge socket closes (1001) once its last CallEnd is sent.
    await bridge.close();
    await new Promise((r) => setTimeout(r, 20));
    for (const s of sessions) s.destroy();
    for (const socket of sockets) socket.destroy();
    await core.replyBus.close();
    await core.store.close();
  }

  return {
    url: `http://${hostPart}:${port}`,
    port,
    core,
    close: (graceMs) => {
      closing ??= close(graceMs);
      return closing;
    },
  };
}
