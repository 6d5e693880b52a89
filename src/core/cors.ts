import { cors as connectCors } from "@connectrpc/connect";
import type { MiddlewareHandler } from "hono";
import { cors } from "hono/cors";
import { StreamingService } from "../gen/streaming_pb.js";
import type { PttCore } from "./ptt-core.js";
import { RETRY_AFTER_TRAILER } from "./rate-limits.js";

/** Where the RPCs live: the CORS rules apply under this path. */
export const RPC_PATH_PREFIX = `/${StreamingService.typeName}/`;

/** Ours beside connect's: the token, and what our headers and trailers tell a client. */
const ALLOWED_HEADERS = [...connectCors.allowedHeaders, "Authorization", "ptt-resume-from"];
const EXPOSED_HEADERS = [
  ...connectCors.exposedHeaders,
  "ptt-turn-id",
  "ptt-transcript",
  "ptt-collect",
  "ptt-last-seq",
  "ptt-commit-ms",
  RETRY_AFTER_TRAILER,
];
/** Browsers cache a preflight this long (Chromium caps it at 2 h). */
const MAX_AGE_S = 7200;

/**
 * The origin a browser on `origin` may read answers as: itself when PTT_ALLOWED_ORIGINS lists
 * it (or is "*"), else none. The server's own origin needs no CORS; other pages get none, so
 * they can neither read an answer nor, for a call a browser preflights (Connect with its
 * content types, gRPC-Web), send it. Credentials (cookies) are never allowed: auth is a
 * bearer token the page sets itself.
 */
export function corsOrigin(core: PttCore, origin: string | null | undefined): string | undefined {
  if (!origin) return undefined;
  const allowed = core.allowedOrigins;
  return allowed.includes("*") || allowed.includes(origin) ? origin : undefined;
}

/**
 * CORS for Connect and gRPC-Web from PTT_ALLOWED_ORIGINS, as Hono middleware (hono/cors with
 * connect's header lists): answers preflights and adds the headers to the RPCs' answers. The
 * fetch runtimes route the RPCs through it; Node answers preflights with it and adds the same
 * headers itself (corsHeaders), since connect-node writes the RPCs' answers.
 */
export function corsMiddleware(core: PttCore): MiddlewareHandler {
  return cors({
    origin: (origin) => corsOrigin(core, origin) ?? null,
    allowMethods: [...connectCors.allowedMethods],
    allowHeaders: ALLOWED_HEADERS,
    exposeHeaders: EXPOSED_HEADERS,
    maxAge: MAX_AGE_S,
    credentials: false,
  });
}

/** The headers an RPC answer carries for a browser on `origin` (Node's connect adapter). */
export function corsHeaders(core: PttCore, origin: string | null | undefined): [string, string][] {
  const allowed = corsOrigin(core, origin);
  const headers: [string, string][] = [["vary", "Origin"]];
  if (!allowed) return headers;
  headers.push(
    ["access-control-allow-origin", allowed],
    ["access-control-expose-headers", EXPOSED_HEADERS.join(",")],
  );
  return headers;
}
