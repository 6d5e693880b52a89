import { Hono } from "hono";
import { corsMiddleware, RPC_PATH_PREFIX } from "./cors.js";
import type { PttCore } from "./ptt-core.js";

/** The non-RPC routes of docs/protocol.md §7, shared by every runtime. */
export function createHttpApp(core: PttCore): Hono {
  const app = new Hono();
  // Preflights of Connect and gRPC-Web calls from PTT_ALLOWED_ORIGINS (the calls themselves
  // are answered by connect, which adds the same headers: corsHeaders).
  app.use(`${RPC_PATH_PREFIX}*`, corsMiddleware(core));
  app.get("/healthz", (c) => c.text("ok\n"));
  app.get("/readyz", async (c) => {
    try {
      await core.store.ping();
      return c.text("ready\n");
    } catch (err) {
      core.logger.warn("store not reachable", { error: String(err) });
      return c.text("store not reachable\n", 503);
    }
  });
  app.get("/metrics", async (c) => {
    const stats = await core.store.stats();
    const body = core.metrics.render({ ...stats, repliesInFlight: core.replies.inFlight });
    return c.body(body, 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" });
  });
  // A gRPC or gRPC-Web client calling a method we do not have must get grpc-status 12, not an
  // HTTP 404 page (which gRPC clients report as a transport failure). Connect's own protocol
  // answers 404 for it, as its spec says.
  app.notFound((c) => {
    const type = c.req.header("content-type") ?? "";
    if (!/^application\/grpc/i.test(type)) return c.text("404 Not Found", 404);
    const path = new URL(c.req.url).pathname.slice(0, 200);
    return new Response(null, {
      status: 200,
      headers: {
        "content-type": type.slice(0, 100),
        "grpc-status": "12",
        "grpc-message": encodeURIComponent(`method ${path} is not implemented by ptt-edge`),
      },
    });
  });
  return app;
}
