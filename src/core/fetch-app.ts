import { createConnectRouter } from "@connectrpc/connect";
import { createFetchHandler } from "@connectrpc/connect/protocol";
import type { Hono } from "hono";
import { corsHeaders } from "./cors.js";
import { createHttpApp } from "./http-app.js";
import type { PttCore } from "./ptt-core.js";
import { connectRouterOptions } from "./request-decoding.js";
import { overlongDeadlineHeaders, refusedRequest } from "./request-guard.js";
import { routes, type StreamingHandlers } from "./streaming-service.js";

export interface FetchAppOptions {
  /** Aborts running calls on shutdown. */
  shutdownSignal?: AbortSignal;
  /** Adds routes to the shared Hono app (the demo page). */
  extend?: (app: Hono) => void;
  /** The calls to serve; the core's own when absent. */
  handlers?: StreamingHandlers;
}

export type FetchHandler = (req: Request) => Promise<Response>;

/**
 * Connect and gRPC-Web through Connect's fetch handlers, everything else through
 * the shared Hono app: one `(Request) => Response` for Bun, Deno and Workers.
 * (gRPC needs HTTP/2 trailers, which fetch-style servers cannot send.)
 */
export function createFetchApp(core: PttCore, options: FetchAppOptions = {}): FetchHandler {
  const router = createConnectRouter({
    ...connectRouterOptions(core.limits.maxRequestBytes, options.shutdownSignal),
    // Real gRPC is served on node:http2 where the runtime has it; over fetch it cannot work.
    grpc: false,
  });
  routes(core, options.handlers)(router);
  const rpc = new Map<string, FetchHandler>();
  for (const handler of router.handlers) {
    rpc.set(handler.requestPath, createFetchHandler(handler, { httpVersion: "1.1" }));
  }
  const app = createHttpApp(core);
  options.extend?.(app);
  return async (req) => {
    // A fetch Request has no HTTP/2 pseudo-headers, and workerd's Headers.get throws on such a
    // name (test/workers: "Invalid header name"), so ":authority" is answered as absent here.
    const refused = refusedRequest(
      (name) => (name.startsWith(":") ? null : req.headers.get(name)),
      core,
    );
    if (refused) return forbidden(refused);
    const overlong = overlongDeadlineHeaders((name) => req.headers.get(name));
    if (overlong.length > 0) req = withoutHeaders(req, overlong);
    const path = new URL(req.url).pathname;
    const handler = rpc.get(path);
    // Preflights go to the Hono app's CORS middleware; connect would answer them 405.
    if (!handler || req.method === "OPTIONS") return app.fetch(req);
    const res = await handler(req);
    const origin = req.headers.get("origin");
    if (origin !== null) for (const [k, v] of corsHeaders(core, origin)) res.headers.set(k, v);
    return res;
  };
}

function forbidden(reason: string): Response {
  return new Response(`${reason}\n`, { status: 403, headers: { "content-type": "text/plain" } });
}

/** The same request without some headers (a fetch Request's own headers are immutable). */
function withoutHeaders(req: Request, names: readonly string[]): Request {
  const headers = new Headers(req.headers);
  for (const name of names) headers.delete(name);
  return new Request(req, { headers });
}
