import type { BridgeConnection } from "../../bridge/server/bridge-connection.js";
import { BRIDGE_PATH, type BridgeUpgrade } from "../../bridge/server/bridge-hub.js";
import type { PttServer } from "../../server/ptt-server.js";
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
    /** Seconds without a byte either way before a connection is closed (0 to 255). */
    idleTimeout: number;
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

export interface ServeOptions {
  port: number;
  host: string;
  /** The node:http2 port for gRPC: Bun.serve cannot send HTTP trailers. */
  grpcPort: number;
}

export interface ServedBun {
  readonly url: string;
  readonly grpcUrl: string;
  close(graceMs?: number): Promise<void>;
}

/** ptt-edge on Bun: Bun.serve for Connect, gRPC-Web, the bridge and the rest; gRPC on node:http2. */
export async function serveBun(server: PttServer, options: ServeOptions): Promise<ServedBun> {
  const hub = server.bridge;
  const bun = Bun.serve({
    port: options.port,
    hostname: options.host,
    // Bun.serve's only connection bound (whole seconds, at most 255): no header or request
    // timeout, no connection cap of its own (README, Limits and timeouts).
    idleTimeout: Math.min(255, Math.max(1, Math.ceil(server.connections.idleTimeoutMs / 1000))),
    fetch(req, srv) {
      if (new URL(req.url).pathname !== BRIDGE_PATH) return server.fetch(req);
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
  let grpc: Awaited<ReturnType<typeof listenH2c>>;
  try {
    grpc = await listenH2c(server.core, options.grpcPort, options.host, server.shutdownSignal, {
      grpcFastPath: server.grpcFastPath,
      connections: server.connections,
    });
  } catch (err) {
    bun.stop(true);
    throw err;
  }
  let grpcClosed: Promise<void> | undefined;
  server.listen({
    stopAccepting() {
      bun.stop(false);
      grpcClosed = grpc.close(server.graceMs);
    },
    async closeConnections() {
      bun.stop(true);
      await grpcClosed;
    },
  });
  return {
    url: `http://${bun.hostname}:${bun.port}`,
    grpcUrl: grpc.url,
    close: (graceMs) => server.shutdown(graceMs),
  };
}
