/** The subprotocol a bridge client offers and the server selects. */
export const BRIDGE_PROTOCOL = "ptt.bridge.v1";
/** Browsers cannot set headers on a WebSocket: a token may ride in the protocol list instead. */
const TOKEN_PREFIX = "bearer.";

/** Splits a Sec-WebSocket-Protocol header value into its offers. */
export function offeredProtocols(header: string | null | undefined): string[] {
  return (header ?? "")
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p.length > 0);
}

/** The subprotocol to answer with: ours if offered (tokens are never echoed back). */
export function selectProtocol(offered: readonly string[]): string | undefined {
  return offered.includes(BRIDGE_PROTOCOL) ? BRIDGE_PROTOCOL : undefined;
}

/**
 * The headers calls on this socket authenticate with: the upgrade request's own,
 * plus `authorization: Bearer <token>` from a `bearer.<token>` protocol offer when
 * the request carried no Authorization header (docs/protocol.md §6).
 */
export function bridgeRequestHeaders(upgrade: Headers): Headers {
  const headers = new Headers(upgrade);
  if (!headers.has("authorization")) {
    const offer = offeredProtocols(upgrade.get("sec-websocket-protocol")).find((p) =>
      p.startsWith(TOKEN_PREFIX),
    );
    if (offer) headers.set("authorization", `Bearer ${offer.slice(TOKEN_PREFIX.length)}`);
  }
  return headers;
}

/**
 * Browsers send Origin on WebSocket upgrades and never enforce same-origin on them,
 * so without this check any web page could drive a user's local server. Allowed:
 * no Origin (native clients), the server's own origin, or one listed in `allowed`
 * ("*" allows all). With `localOnly` (a server bound to loopback), "its own origin"
 * must also be a loopback name: a page on evil.test whose DNS was rebound to
 * 127.0.0.1 has Origin and Host both evil.test. Returns why an upgrade is refused.
 */
export function refusedOrigin(
  headers: Headers,
  allowed: readonly string[],
  localOnly = false,
): string | undefined {
  const origin = headers.get("origin");
  if (origin === null || allowed.includes("*") || allowed.includes(origin)) return undefined;
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return "origin: not a URL";
  }
  const sameHost = url.host === headers.get("host");
  if (sameHost && (!localOnly || isLoopbackName(url.hostname))) return undefined;
  return `origin: ${origin.slice(0, 100)} may not open the bridge (set PTT_ALLOWED_ORIGINS)`;
}

/** localhost, *.localhost, 127.0.0.0/8 and ::1: names that cannot be rebound elsewhere. */
export function isLoopbackName(hostname: string): boolean {
  const h = hostname.toLowerCase();
  return (
    h === "localhost" ||
    h.endsWith(".localhost") ||
    /^127(\.\d{1,3}){3}$/.test(h) ||
    h === "[::1]" ||
    h === "::1"
  );
}
