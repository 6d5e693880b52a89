import type * as http from "node:http";
import type { ConnectionLimits } from "../../core/connection-limits.js";

type H1Limits = Pick<
  ConnectionLimits,
  "headersTimeoutMs" | "requestTimeoutMs" | "keepAliveTimeoutMs"
>;

/** node:http server options: its timeout checks run often enough for the timeouts set. */
export function h1ServerOptions(limits: H1Limits): http.ServerOptions {
  return {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // node:http checks the timeouts on this period (30 s by default): a quarter of the headers
    // timeout, so a request head is cut within 1.25 times it.
    connectionsCheckingInterval: Math.max(
      10,
      Math.min(1000, Math.floor(limits.headersTimeoutMs / 4)),
    ),
  };
}

/**
 * node:http enforces headersTimeout and requestTimeout (408, then closes) only for servers
 * that listen(): it starts its checks on the server's 'listening' event. Ours never listens,
 * the one-port sniffer hands it sockets (one-port.ts), so a slowloris trickle or an upgrade
 * with unfinished headers was never cut. The event starts those checks; server.close() stops
 * them. (keepAliveTimeout applies per socket and needs nothing.)
 */
export function startTimeoutChecks(server: http.Server): void {
  server.emit("listening");
}
