import type { Hono } from "hono";
import { DEMO_HTML, DEMO_SCRIPT_HASH, DEMO_STYLE_HASH } from "./demo-assets.js";

/**
 * Only the page's own inline script and style (by hash) run; it talks to its own origin
 * (`'self'` covers ws:/wss: of the same host in CSP Level 3) and may use the microphone.
 */
const CSP = [
  "default-src 'none'",
  `script-src ${DEMO_SCRIPT_HASH}`,
  `style-src ${DEMO_STYLE_HASH}`,
  "connect-src 'self'",
  "img-src data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const HEADERS = {
  "content-type": "text/html; charset=utf-8",
  "content-security-policy": CSP,
  "permissions-policy": "microphone=(self)",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-cache",
};

/** The push-to-talk demo page (src/bridge/demo) at `/` and `/index.html`. */
export function mountDemo(app: Hono): void {
  for (const path of ["/", "/index.html"]) {
    app.get(path, (c) => c.body(DEMO_HTML, 200, HEADERS));
  }
}
