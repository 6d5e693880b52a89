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

export { isLoopbackName, refusedOrigin } from "../../core/origin-policy.js";
