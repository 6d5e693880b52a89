import { setMaxListeners } from "node:events";
import * as http from "node:http";
import * as http2 from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { getRequestListener } from "@hono/node-server";
import type { ConnectionLimits } from "../../core/connection-limits.js";
import { corsHeaders } from "../../core/cors.js";
import type { PttCore, PttCoreOptions } from "../../core/ptt-core.js";
import { connectRouterOptions } from "../../core/request-decoding.js";
import { routes } from "../../core/streaming-service.js";
import { createPttServer, type PttServer } from "../../server/ptt-server.js";
import { createNodeBridge } from "./bridge-ws.js";
import { nodeContextValues } from "./call-transport.js";
import { firstOf, installStreamHandler, pttGrpcFastPath } from "./grpc-fast-path.js";
import { h1ServerOptions, startTimeoutChecks } from "./h1-limits.js";
import { guardH2Server, h2ServerOptions } from "./h2-limits.js";
import { createOnePortServer } from "./one-port.js";
import { guardH1, guardH2, lingerH2 } from "./request-guard.js";

type Fallback = NonNullable<Parameters<typeof connectNodeAdapter>[0]["fallback"]>;

export interface NodeServerOptions {
  /** 0 picks a free port. Default 8080. */
  port?: number;
  host?: string;
  config?: PttCoreOptions;
  /** How long running replies may finish on shutdown before they are cancelled. */
  graceMs?: number;
  /** Serve uncompressed binary gRPC calls through the fast path (grpc-fast-path.ts). Default on. */
  grpcFastPath?: boolean;
  /** Timeouts and caps of connections and streams (README, Limits and timeouts). */
  connections?: Partial<ConnectionLimits>;
}

export interface NodeServer {
  readonly url: string;
  readonly port: number;
  readonly core: PttCore;
  /** Graceful: stop accepting, let replies finish up to graceMs, cancel the rest, close. */
  close(graceMs?: number): Promise<void>;
}

/** A server on Node from core options (tests, embedding): createPttServer + serveNode. */
export function startNodeServer(options: NodeServerOptions = {}): Promise<NodeServer> {
  const server = createPttServer({
    core: options.config,
    graceMs: options.graceMs,
    grpcFastPath: options.grpcFastPath,
    connections: options.connections,
  });
  return serveNode(server, options);
}

/**
 * ptt-edge on Node: gRPC (h2c), Connect (HTTP/1.1 and HTTP/2), gRPC-Web and the
 * WebSocket bridge (/v1/bridge) on one port, with the Hono app for /healthz,
 * /readyz, /metrics and the demo. Translation only: the server owns the lifecycle.
 */
export async function serveNode(
  server: PttServer,
  options: { port?: number; host?: string } = {},
): Promise<NodeServer> {
  const { core } = server;
  // Every running call listens on the server's one shutdown signal (connect's handler context
  // and the fast path's), and stops listening when it ends: 50 concurrent replies are 50
  // listeners, not a leak (test/node/max-listeners.test.ts checks they all go). Node would
  // warn past 10 and an operator would read that as one.
  setMaxListeners(0, server.shutdownSignal);
  // Hono's listener takes both request kinds; its types name the http2 ones differently.
  const hono = getRequestListener(server.httpApp().fetch) as unknown as Fallback;
  const rpcHandler = connectNodeAdapter({
    routes: routes(core),
    contextValues: nodeContextValues,
    ...connectRouterOptions(core.limits.maxRequestBytes, server.shutdownSignal),
    fallback: hono,
  });
  const handler = withCors(core, rpcHandler, hono);
  const bridge = createNodeBridge(server.bridge);
  // After shutdown starts, a kept-alive HTTP/1.1 connection may still bring a request: answer
  // 503 (UNAVAILABLE to Connect and gRPC-Web clients) and close it, before the store is touched.
  const limits = server.connections;
  const h1 = http.createServer(h1ServerOptions(limits), (req, res) => {
    if (guardH1(core, req, res)) return;
    if (!server.draining) return void handler(req, res);
    res.writeHead(503, { connection: "close", "content-type": "text/plain" });
    res.end("shutting down\n");
  });
  h1.on("upgrade", (req, socket: Socket, head) => {
    if (bridge.upgrade(req, socket, head)) return;
    // An upgrade we do not do (h2c from curl --http2, Upgrade: foo, a WebSocket elsewhere):
    // ignore the offer, as HTTP allows, and answer the request itself (a WebSocket elsewhere
    // gets the app's 404).
    h1.emit("connection", withoutUpgrade(req, socket, head));
    socket.resume();
  });
  startTimeoutChecks(h1);
  const h2 = http2.createServer(h2ServerOptions(limits), (req, res) => {
    lingerH2(req);
    handler(req, res);
  });
  const h2Guard = guardH2Server(h2, limits);
  installStreamHandler(
    h2,
    firstOf(
      h2Guard.handler,
      guardH2(core),
      server.grpcFastPath ? pttGrpcFastPath(core, server.shutdownSignal) : undefined,
    ),
  );
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
  const { tcp, destroyUndecided } = createOnePortServer(h1, h2, limits);
  await new Promise<void>((resolve, reject) => {
    tcp.once("error", reject);
    tcp.listen(options.port ?? 8080, options.host ?? "127.0.0.1", () => resolve());
  });
  const { port, address, family } = tcp.address() as AddressInfo;
  const hostPart = family === "IPv6" ? `[${address}]` : address;
  server.listen({
    stopAccepting() {
      tcp.close();
      destroyUndecided();
      // Idle HTTP/2 connections get GOAWAY now; busy ones finish their streams first.
      for (const s of sessions) s.close();
      // Also stops node:http's timeout checks (h1-limits.ts).
      h1.close();
    },
    async closeConnections() {
      bridge.stopKeepalive();
      await new Promise((r) => setTimeout(r, 20));
      for (const s of sessions) s.destroy();
      for (const socket of sockets) socket.destroy();
      h2Guard.close();
    },
  });
  return {
    url: `http://${hostPart}:${port}`,
    port,
    core,
    close: (graceMs) => server.shutdown(graceMs),
  };
}

/**
 * The socket of an upgrade request we decline, rewound to the request's start without its
 * upgrade headers, so the HTTP/1.1 server parses and answers it as any other request. node:http
 * hands every Upgrade request to the 'upgrade' listener, and has no way to decline one.
 */
function withoutUpgrade(req: http.IncomingMessage, socket: Socket, head: Buffer): Socket {
  const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    if (/^(upgrade|http2-settings)$/i.test(name)) continue;
    if (/^connection$/i.test(name)) {
      // Keep "close" and "keep-alive"; the upgrade tokens go with the offer.
      const kept = (raw[i + 1] as string)
        .split(",")
        .map((t) => t.trim())
        .filter((t) => t !== "" && !/^(upgrade|http2-settings)$/i.test(t));
      if (kept.length > 0) lines.push(`${name}: ${kept.join(", ")}`);
      continue;
    }
    lines.push(`${name}: ${raw[i + 1]}`);
  }
  // rawHeaders are latin1 strings of the bytes received: latin1 gives the same bytes back.
  socket.unshift(Buffer.concat([Buffer.from(`${lines.join("\r\n")}\r\n\r\n`, "latin1"), head]));
  return socket;
}

/**
 * CORS on Node: a browser's preflight goes to the Hono app's middleware (connect-node would
 * answer it 405); a browser's call gets the same headers before connect writes its answer.
 * Calls without an Origin header (native clients) pass untouched.
 */
function withCors(core: PttServer["core"], rpc: Fallback, hono: Fallback): Fallback {
  return (req, res) => {
    const origin = req.headers.origin;
    if (origin === undefined) return rpc(req, res);
    if (req.method === "OPTIONS") return hono(req, res);
    for (const [k, v] of corsHeaders(core, origin)) res.setHeader(k, v);
    return rpc(req, res);
  };
}
