import type { Hono } from "hono";
import { mountDemo } from "../bridge/demo/routes.js";
import { createBridgeHandlers } from "../bridge/server/bridge-connection.js";
import { BridgeHub } from "../bridge/server/bridge-hub.js";
import { type ConnectionLimits, resolveConnectionLimits } from "../core/connection-limits.js";
import type { ServerConfig } from "../core/env-config.js";
import { createFetchApp, type FetchHandler } from "../core/fetch-app.js";
import { createHttpApp } from "../core/http-app.js";
import { createPttCore, type PttCore, type PttCoreOptions } from "../core/ptt-core.js";
import { finishReplies } from "../core/shutdown.js";

/** What a server is built from: a parsed configuration, or just core options (tests, embedding). */
export interface PttServerOptions {
  core?: PttCoreOptions;
  /** How long running replies may finish on shutdown before they are cancelled. Default 10 s. */
  graceMs?: number;
  /** node:http2 runtimes: serve plain gRPC calls through the fast path. Default on. */
  grpcFastPath?: boolean;
  /** Timeouts and caps of the listeners (README, Limits and timeouts). */
  connections?: Partial<ConnectionLimits>;
  /** Names for the start-up lines (the core does not know them). */
  storeName?: string;
  workflowName?: string;
}

/** The runtime's listeners, as the shutdown sequence drives them. */
export interface Listeners {
  /** Stop accepting connections and requests (idle ones may close now). */
  stopAccepting(): void;
  /** Last step, after replies and bridge sockets: close what is still open. */
  closeConnections(): Promise<void>;
}

/**
 * One server's life, the same on every runtime: configuration → core (store, workflow) →
 * the apps every runtime serves (Connect router, health, demo, bridge) → one shutdown. A
 * runtime adapter (serveNode, serveBun, serveDeno) only binds these to its listeners.
 */
export interface PttServer {
  readonly core: PttCore;
  readonly graceMs: number;
  readonly grpcFastPath: boolean;
  /** Timeouts and caps each runtime applies to its listeners. */
  readonly connections: Readonly<ConnectionLimits>;
  /** The bridge's sockets (upgrade checks, wiring, shutdown order). */
  readonly bridge: BridgeHub;
  /** Aborted when the grace period is over: running calls end. */
  readonly shutdownSignal: AbortSignal;
  /** True once shutdown began: runtimes answer new requests 503. */
  readonly draining: boolean;
  /** /healthz, /readyz, /metrics and the demo page, for runtimes that route them themselves. */
  httpApp(): Hono;
  /** Connect, gRPC-Web and httpApp as one fetch handler (Bun, Deno). */
  readonly fetch: FetchHandler;
  /** The runtime's listeners, for shutdown. */
  listen(listeners: Listeners): void;
  /** Start-up lines: where it listens, the demo, the store and workflow in force. */
  describe(
    runtime: string,
    url: string,
    grpcUrl?: string,
  ): { text: string; fields: Record<string, unknown> };
  /**
   * Once, whoever asks: stop accepting, let replies finish for `graceMs`, cancel the rest,
   * close the bridge sockets (1001 each after its last CallEnd), the listeners, the reply
   * bus, the store.
   */
  shutdown(graceMs?: number): Promise<void>;
}

/** Server options from a parsed configuration (configFromEnv). */
export function serverOptionsFrom(
  config: ServerConfig,
  extra: Pick<PttCoreOptions, "logger" | "store" | "replyBus" | "memory" | "journal"> & {
    storeName?: string;
  } = {},
): PttServerOptions {
  const { storeName, ...core } = extra;
  return {
    core: { ...config.core, ...core },
    graceMs: config.graceMs,
    grpcFastPath: config.grpcFastPath,
    connections: config.connections,
    storeName: storeName ?? config.store,
    workflowName: config.workflow,
  };
}

export function createPttServer(options: PttServerOptions = {}): PttServer {
  const core = createPttCore(options.core);
  const abort = new AbortController();
  const bridge = new BridgeHub(createBridgeHandlers(core));
  const graceMs = options.graceMs ?? 10_000;
  const connections = resolveConnectionLimits(options.connections);
  const listeners: Listeners[] = [];
  let draining = false;
  let fetch: FetchHandler | undefined;
  let closing: Promise<void> | undefined;

  async function shutdown(grace: number): Promise<void> {
    draining = true;
    for (const l of listeners) l.stopAccepting();
    // Bridge sockets stay open for their running replies, but take no new call (unavailable).
    bridge.stopAccepting();
    await finishReplies(core, grace);
    abort.abort();
    await bridge.close();
    await Promise.all(listeners.map((l) => l.closeConnections()));
    await core.replyBus.close();
    await core.store.close();
  }

  return {
    core,
    graceMs,
    grpcFastPath: options.grpcFastPath ?? true,
    connections,
    bridge,
    shutdownSignal: abort.signal,
    get draining() {
      return draining;
    },
    httpApp() {
      const app = createHttpApp(core);
      mountDemo(app);
      return app;
    },
    get fetch() {
      fetch ??= createFetchApp(core, { shutdownSignal: abort.signal, extend: mountDemo });
      return fetch;
    },
    listen(l) {
      listeners.push(l);
    },
    describe(runtime, url, grpcUrl) {
      const store = options.storeName ?? "memory";
      const workflow = options.workflowName ?? "echo";
      const ws = url.replace(/^http/, "ws");
      const grpc = grpcUrl ? `gRPC on ${grpcUrl} (h2c)` : "gRPC (h2c) on the same port";
      return {
        text: [
          `ptt-edge listening on ${url} (${runtime}); open ${url}/ for the demo`,
          `  Connect + gRPC-Web, bridge ${ws}/v1/bridge, ${grpc}`,
          `  store ${store}, workflow ${workflow}; /healthz /readyz /metrics`,
        ].join("\n"),
        fields: { runtime, url, demo: `${url}/`, grpc: grpcUrl ?? url, store, workflow },
      };
    },
    shutdown(grace = graceMs) {
      closing ??= shutdown(grace);
      return closing;
    },
  };
}
