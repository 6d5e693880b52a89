import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { type WebSocket, WebSocketServer } from "ws";
import {
  BRIDGE_PATH,
  type BridgeHub,
  type BridgeUpgrade,
  REFUSAL_PHRASES,
} from "../../bridge/server/bridge-hub.js";
import { selectProtocol } from "../../bridge/server/handshake.js";
import type { BridgeSocket } from "../../bridge/server/socket-port.js";

const KEEPALIVE_MS = 30_000;

/**
 * The bridge on Node: `ws` accepts upgrades on /v1/bridge of the shared HTTP/1.1
 * server, enforces the frame-size limit, and keeps idle sockets honest with
 * ping/pong. Everything about frames and calls happens in BridgeConnection, and the
 * upgrade checks and shutdown order in BridgeHub.
 */
export function createNodeBridge(hub: BridgeHub) {
  const { handlers } = hub;
  const wss = new WebSocketServer({
    noServer: true,
    // ws closes over-size frames with 1009 before buffering them.
    maxPayload: handlers.options.maxFrameBytes,
    perMessageDeflate: false,
    handleProtocols: (offers) => selectProtocol([...offers]) ?? false,
  });
  const alive = new WeakSet<WebSocket>();
  const keepalive = setInterval(() => {
    for (const ws of wss.clients) {
      if (!alive.has(ws)) {
        ws.terminate();
        continue;
      }
      alive.delete(ws);
      ws.ping();
    }
  }, KEEPALIVE_MS);
  keepalive.unref();

  function accept(ws: WebSocket, upgrade: BridgeUpgrade, raw: Duplex): void {
    alive.add(ws);
    ws.on("pong", () => alive.add(ws));
    // Frames sent while handling one message (a COLLECT's response and its CallEnd) leave in
    // one write: the TCP socket stays corked until the event loop's check phase.
    let corked = false;
    const uncork = () => {
      corked = false;
      raw.uncork();
    };
    const socket: BridgeSocket = {
      send: (data) => {
        if (!corked) {
          corked = true;
          raw.cork();
          process.nextTick(uncork);
        }
        ws.send(data, { binary: true }, () => conn.drained());
      },
      close: (code, reason) => ws.close(code, reason),
      bufferedAmount: () => ws.bufferedAmount,
      // Each frame's write callback: the last one fires once the buffer is empty.
      drainSignal: true,
      pauseReading: () => ws.pause(),
      resumeReading: () => ws.resume(),
    };
    const conn = hub.connect(upgrade, socket);
    ws.on("message", (data, isBinary) => {
      // binaryType is the default "nodebuffer": every message arrives as one Buffer.
      const bytes = data as Buffer;
      conn.receive(isBinary ? bytes : bytes.toString("utf8"));
    });
    ws.on("close", () => conn.closedByPeer());
    ws.on("error", () => ws.terminate());
  }

  return {
    /**
     * Handles an HTTP/1.1 upgrade; returns false when it is not a WebSocket upgrade to the
     * bridge's path (the caller answers it as a plain request).
     */
    upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
      const path = (req.url ?? "").split("?")[0];
      if (path !== BRIDGE_PATH || req.headers.upgrade?.toLowerCase() !== "websocket") return false;
      const url = `http://${req.headers.host ?? "localhost"}${req.url ?? BRIDGE_PATH}`;
      const checked = hub.check(headersOf(req), url);
      if ("status" in checked) {
        const phrase = REFUSAL_PHRASES[checked.status] ?? "Bad Request";
        const extra = Object.entries(checked.headers ?? {})
          .map(([k, v]) => `${k}: ${v}\r\n`)
          .join("");
        socket.end(
          `HTTP/1.1 ${checked.status} ${phrase}\r\ncontent-type: text/plain\r\n${extra}connection: close\r\n\r\n${checked.reason}\n`,
        );
        return true;
      }
      // Clients that offer no subprotocol are served too; ours is selected when offered.
      wss.handleUpgrade(req, socket, head, (ws) => accept(ws, checked, socket));
      return true;
    },
    /** Shutdown (the hub's own steps run in the server's shutdown): stops the ping timer. */
    stopKeepalive(): void {
      clearInterval(keepalive);
      wss.close();
    },
  };
}

function headersOf(req: IncomingMessage): Headers {
  const headers = new Headers();
  for (const [k, v] of Object.entries(req.headers)) {
    if (typeof v === "string") headers.set(k, v);
  }
  return headers;
}
