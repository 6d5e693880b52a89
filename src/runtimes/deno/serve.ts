import { BRIDGE_PATH } from "../../bridge/server/bridge-hub.js";
import type { PttServer } from "../../server/ptt-server.js";
import { listenH2c } from "../node/h2c-server.js";

// The few Deno APIs used here, declared rather than pulling Deno's types into the Node build.
interface DenoServer {
  addr: { hostname: string; port: number };
  shutdown(): Promise<void>;
}
declare const Deno: {
  serve(
    options: { port: number; hostname: string; onListen?: () => void },
    handler: (req: Request) => Response | Promise<Response>,
  ): DenoServer;
  upgradeWebSocket(
    req: Request,
    options?: { protocol?: string },
  ): { socket: WebSocket; response: Response };
};

export interface ServeOptions {
  port: number;
  host: string;
  /** The node:http2 port for gRPC: Deno.serve has no cleartext HTTP/2 trailers. */
  grpcPort: number;
}

export interface ServedDeno {
  readonly url: string;
  readonly grpcUrl: string;
  close(graceMs?: number): Promise<void>;
}

/** ptt-edge on Deno: Deno.serve for Connect, gRPC-Web, the bridge and the rest; gRPC on node:http2. */
export async function serveDeno(server: PttServer, options: ServeOptions): Promise<ServedDeno> {
  const hub = server.bridge;

  /**
   * Deno's WebSocket has no drain event (the connection polls bufferedAmount while replies
   * wait) and cannot pause reading (the connection refuses calls past its limits instead). Nor
   * does it take a message size limit: a message up to 64 MiB is buffered before receive()
   * closes 1009.
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

  // Deno.serve cannot stop listening without closing the bridge sockets: while draining it
  // answers 503, and server.shutdown() comes last.
  const deno = Deno.serve(
    { port: options.port, hostname: options.host, onListen: () => {} },
    (req) => {
      if (server.draining) return new Response("shutting down\n", { status: 503 });
      const bridge = new URL(req.url).pathname === BRIDGE_PATH;
      return bridge && req.headers.get("upgrade")?.toLowerCase() === "websocket"
        ? acceptBridge(req)
        : server.fetch(req);
    },
  );
  let grpc: Awaited<ReturnType<typeof listenH2c>>;
  try {
    grpc = await listenH2c(server.core, options.grpcPort, options.host, server.shutdownSignal, {
      grpcFastPath: server.grpcFastPath,
      connections: server.connections,
    });
  } catch (err) {
    await deno.shutdown();
    throw err;
  }
  let grpcClosed: Promise<void> | undefined;
  server.listen({
    stopAccepting() {
      grpcClosed = grpc.close(server.graceMs);
    },
    async closeConnections() {
      // Deno's shutdown waits for every close handshake, which a client that does not read
      // never completes (its Close frame waits behind the data): go on after a second.
      await Promise.race([deno.shutdown(), new Promise((r) => setTimeout(r, 1000))]);
      await grpcClosed;
    },
  });
  return {
    url: `http://${deno.addr.hostname}:${deno.addr.port}`,
    grpcUrl: grpc.url,
    close: (graceMs) => server.shutdown(graceMs),
  };
}
