/**
 * Bounds on connections and streams, for the runtimes' listeners (README, Limits and timeouts).
 * Core does not listen: each runtime applies what its listeners allow (src/runtimes/node/*,
 * Bun.serve's idleTimeout, the node:http2 gRPC port of Bun and Deno).
 */
export interface ConnectionLimits {
  /** Open TCP connections per listener; more are closed as they arrive. */
  maxConnections: number;
  /**
   * A new connection's first bytes, and an HTTP/1.1 request's whole head (a WebSocket
   * upgrade's too), must arrive within this: slowloris and half-open connections.
   */
  headersTimeoutMs: number;
  /**
   * A whole request (HTTP/1.1 head and body; an HTTP/2 stream up to its END_STREAM) must
   * arrive within this. Replies are not bounded by it.
   */
  requestTimeoutMs: number;
  /** An HTTP/1.1 connection idle between two requests is closed after this. */
  keepAliveTimeoutMs: number;
  /**
   * An HTTP/2 connection with no open stream (a preface or SETTINGS and nothing more, or the
   * last call ended) gets GOAWAY and is closed after this. Bun.serve: its idleTimeout.
   */
  idleTimeoutMs: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS advertised on every HTTP/2 connection. */
  maxConcurrentStreams: number;
  /** HTTP/2 streams open at once on the instance; past it new ones get REFUSED_STREAM. */
  maxOpenStreams: number;
}

export const DEFAULT_CONNECTION_LIMITS: Readonly<ConnectionLimits> = Object.freeze({
  maxConnections: 10_000,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 60_000,
  keepAliveTimeoutMs: 5_000,
  idleTimeoutMs: 60_000,
  maxConcurrentStreams: 1000,
  maxOpenStreams: 10_000,
});

/** Environment variable of each setting. */
export const CONNECTION_LIMIT_VARS: Readonly<Record<keyof ConnectionLimits, string>> =
  Object.freeze({
    maxConnections: "PTT_MAX_CONNECTIONS",
    headersTimeoutMs: "PTT_HEADERS_TIMEOUT_MS",
    requestTimeoutMs: "PTT_REQUEST_TIMEOUT_MS",
    keepAliveTimeoutMs: "PTT_KEEP_ALIVE_TIMEOUT_MS",
    idleTimeoutMs: "PTT_IDLE_TIMEOUT_MS",
    maxConcurrentStreams: "PTT_H2_MAX_CONCURRENT_STREAMS",
    maxOpenStreams: "PTT_MAX_OPEN_STREAMS",
  });

/** Defaults under what was set; a request may not time out before its head may. */
export function resolveConnectionLimits(
  set: Partial<ConnectionLimits> = {},
): Readonly<ConnectionLimits> {
  const limits = { ...DEFAULT_CONNECTION_LIMITS, ...set };
  if (limits.headersTimeoutMs > limits.requestTimeoutMs) {
    throw new Error(
      `${CONNECTION_LIMIT_VARS.headersTimeoutMs} (${limits.headersTimeoutMs}) must not exceed ${CONNECTION_LIMIT_VARS.requestTimeoutMs} (${limits.requestTimeoutMs})`,
    );
  }
  return Object.freeze(limits);
}
