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
  stdout: { writeSync(bytes: Uint8Array): number };
  stderr: { writeSync(bytes: Uint8Array): number };
};

const env = Deno.env.toObject();
const config = configFromEnv(env);
const utf8 = new TextEncoder();
const logger = createJsonLogger(
  (line) => Deno.stdout.writeSync(utf8.encode(`${line}\n`)),
  config.logLevel,
);
const core = createPttCore({ ...config.core, logger });
const shutdown = new AbortController();
const app = createFetchApp(core, { shutdownSignal: shutdown.signal, extend: mountDemo });
const bridge = createBridgeHandlers(core);

function acceptBridge(req: Request): Response {
  const refused = refusedOrigin(req.headers, core.allowedOrigins);
  if (refused) return new Response(`${refused}\n`, { status: 403 });
  const protocol = selectProtocol(offeredProtocols(req.headers.get("sec-websocket-protocol")));
  // Read the request before upgrading: Deno closes it once upgradeWebSocket returns.
  const headers = bridgeRequestHeaders(req.headers);
  const { socket, response } = Deno.upgradeWebSocket(req, protocol ? { protocol } : {});
  socket.binaryType = "arraybuffer";
  const conn = new BridgeConnection(
    bridge,
    {
      send: (bytes) => socket.send(bytes as Uint8Array<ArrayBuffer>),
      close: (code, reason) => socket.close(code, reason),
      bufferedAmount: () => socket.bufferedAmount,
    },
    headers,
    req.url,
  );
  socket.onopen = () => conn.open();
  socket.onmessage = (ev) =>
    conn.receive(typeof ev.data === "string" ? ev.data : new Uint8Array(ev.data));
  socket.onclose = () => conn.closedByPeer();
  return response;
}

const server = Deno.serve(
  { port: config.port, hostname: config.host, onListen: () => {} },
  (req) =>
    new URL(req.url).pathname === "/v1/bridge" &&
    req.headers.get("upgrade")?.toLowerCase() === "websocket"
      ? acceptBridge(req)
      : app(req),
);

// Deno.serve cannot send HTTP trailers over cleartext: real gRPC gets its own node:http2 port.
const grpcPort = Number(env.GRPC_PORT ?? (config.port === 0 ? 0 : config.port + 1));
const grpc = await listenH2c(core, grpcPort, config.host, shutdown.signal);
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
    // Stop accepting on both ports first; running replies then get the grace period.
    const closing = Promise.all([server.shutdown(), grpc.close(config.graceMs)]);
    await finishReplies(core, config.graceMs);
    shutdown.abort();
    await closing;
    Deno.exit(0);
  });
}
