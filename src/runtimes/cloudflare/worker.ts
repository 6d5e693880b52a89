import { env as loadedEnv } from "cloudflare:workers";
import { mountDemo } from "../../bridge/demo/routes.js";
import { refusedOrigin } from "../../bridge/server/handshake.js";
import { createFetchApp, type FetchHandler } from "../../core/fetch-app.js";
import { canonicalHardwareId } from "../../core/identifiers.js";
import type { Logger } from "../../core/ports.js";
import { createPttCore } from "../../core/ptt-core.js";
import { DEVICE_HEADER, READY_OBJECT } from "./device-client.js";
import { createRouteHandlers, forwardCall } from "./device-forward.js";
import { configOf, type Env, loggerOf } from "./env.js";

export { DeviceObject } from "./device-object.js";

interface WorkerApp {
  app: FetchHandler;
  allowedOrigins: readonly string[];
  logger: Logger;
}
/** What is wrong with the settings: every request but /healthz is answered with it. */
interface Misconfigured {
  invalid: string;
}

// One app per isolate and environment: the Worker only validates and routes.
const apps = new WeakMap<Env, WorkerApp | Misconfigured>();

/**
 * Readiness: the Worker holds no sessions, so it asks a device object (the one kept for
 * this) to answer from its storage: Durable Objects and their storage are reachable.
 */
async function ready(env: Env, logger: Logger): Promise<Response> {
  try {
    const res = await env.DEVICE.get(env.DEVICE.idFromName(READY_OBJECT)).fetch(
      new Request("https://device/ping"),
    );
    await res.body?.cancel();
    if (res.ok) return new Response("ready\n");
    logger.warn("device objects not ready", { status: res.status });
  } catch (err) {
    logger.warn("device objects not reachable", { error: String(err) });
  }
  return new Response("device objects not reachable\n", { status: 503 });
}

function appFor(env: Env): WorkerApp | Misconfigured {
  let entry = apps.get(env);
  if (entry) return entry;
  let config: ReturnType<typeof configOf>;
  try {
    config = configOf(env);
  } catch (err) {
    entry = { invalid: `invalid configuration: ${(err as Error).message}` };
    apps.set(env, entry);
    console.error(`ptt-edge: ${entry.invalid}`);
    return entry;
  }
  const core = createPttCore({ ...config.core, logger: loggerOf(config) });
  for (const setting of config.clamped) {
    core.logger.warn("limit lowered to fit Durable Object storage (2 MB per session)", {
      setting,
    });
  }
  const app = createFetchApp(core, {
    handlers: createRouteHandlers(core.auth),
    extend: mountDemo,
  });
  entry = { app, allowedOrigins: core.allowedOrigins, logger: core.logger };
  apps.set(env, entry);
  return entry;
}

// `wrangler dev` (and each new isolate) loads this module before any request: a bad setting
// is named in its output then, and again on every request but /healthz (the process lives).
appFor(loadedEnv as unknown as Env);

/**
 * The Worker: Connect and gRPC-Web calls are checked by the router (request, token) and the
 * original request is forwarded to the device's Durable Object, which runs the same router
 * every runtime runs; bridge sockets go to the object named by `?hardware_id=`, or to an
 * object of their own that forwards each call to its device's object. gRPC is not served:
 * Workers cannot send HTTP trailers to the client.
 */
export default {
  async fetch(req: Request, env: Env): Promise<Response> {
    const url = new URL(req.url);
    if (url.pathname === "/healthz") return new Response("ok\n");
    const entry = appFor(env);
    if ("invalid" in entry) {
      return new Response(`ptt-edge: ${entry.invalid}\n`, {
        status: 500,
        headers: { "content-type": "text/plain; charset=utf-8" },
      });
    }
    const { app, allowedOrigins, logger } = entry;
    if (url.pathname === "/metrics") {
      // Counters live in each device's object; Workers analytics covers the Worker itself.
      return new Response("per-device metrics live in Durable Objects on Workers\n", {
        status: 501,
      });
    }
    if (url.pathname === "/readyz") return ready(env, logger);
    if (url.pathname.startsWith("/streaming.StreamingService/")) {
      return forwardCall(app, env.DEVICE, req);
    }
    if (url.pathname !== "/v1/bridge") return app(req);
    const refused = refusedOrigin(req.headers, allowedOrigins);
    if (refused) return new Response(`${refused}\n`, { status: 403 });
    const headers = new Headers(req.headers);
    headers.delete(DEVICE_HEADER);
    const named = url.searchParams.get("hardware_id");
    if (named === null) {
      // The contract's plain /v1/bridge: the socket gets an object of its own, and each of
      // its calls is forwarded to its device's object.
      const host = env.DEVICE.get(env.DEVICE.newUniqueId());
      return host.fetch(new Request(req, { headers }));
    }
    let device: string;
    try {
      device = canonicalHardwareId(named);
    } catch (err) {
      return new Response(
        `${(err as Error).message} (the hardware_id query parameter picks the device)\n`,
        { status: 400 },
      );
    }
    // The device's own object: its calls run there without a hop.
    headers.set(DEVICE_HEADER, device);
    return env.DEVICE.get(env.DEVICE.idFromName(device)).fetch(new Request(req, { headers }));
  },
} satisfies ExportedHandler<Env>;
