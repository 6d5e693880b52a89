import type * as http from "node:http";
import type * as http2 from "node:http2";
import * as net from "node:net";
import type { ConnectionLimits } from "../../core/connection-limits.js";

// Every HTTP/2 connection (h2c with prior knowledge) opens with this preface.
const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

export interface OnePortServer {
  readonly tcp: net.Server;
  /** Destroys connections that have not yet said which protocol they speak. */
  destroyUndecided(): void;
}

/**
 * One TCP port for HTTP/1.1 and cleartext HTTP/2: node:http2 cannot fall back to
 * HTTP/1.1 without TLS, so we read the first bytes of each connection and hand the
 * socket to the server that speaks its protocol.
 */
export function createOnePortServer(
  h1: http.Server,
  h2: http2.Http2Server,
  limits: Pick<ConnectionLimits, "maxConnections" | "headersTimeoutMs">,
): OnePortServer {
  const undecided = new Set<net.Socket>();
  const tcp = net.createServer({ noDelay: true }, (socket) => {
    undecided.add(socket);
    // A client that connects and says nothing (or too little to tell) is dropped.
    socket.setTimeout(limits.headersTimeoutMs, () => socket.destroy());
    socket.once("close", () => undecided.delete(socket));
    let seen: Buffer = Buffer.alloc(0);
    const onData = (data: Buffer) => {
      seen = seen.length === 0 ? data : Buffer.concat([seen, data]);
      const n = Math.min(seen.length, H2_PREFACE.length);
      const isH2 = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      // Wait for more only while the bytes so far could still be the preface.
      if (isH2 && n < H2_PREFACE.length) return;
      socket.off("data", onData);
      socket.setTimeout(0);
      undecided.delete(socket);
      socket.pause();
      socket.unshift(seen);
      if (isH2) {
        // node:http2 drains what is buffered in the socket itself, then reads natively.
        h2.emit("connection", socket);
      } else {
        h1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
    socket.on("error", () => socket.destroy());
  });
  // Past it, node:net closes each new connection as it arrives (every protocol of the port).
  tcp.maxConnections = limits.maxConnections;
  return {
    tcp,
    destroyUndecided() {
      for (const socket of undecided) socket.destroy();
    },
  };
}
