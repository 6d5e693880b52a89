/** Which browser origins may drive this server (the bridge and, on loopback, every route). */

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
  // A browser sends a serialized origin: scheme, host, port. Anything else (user info as in
  // "http://evil@127.0.0.1:8080", a path) is not one, and must not pass for the host after "@".
  if (url.origin !== origin) return `origin: ${origin.slice(0, 100)} is not a serialized origin`;
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
