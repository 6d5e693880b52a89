import { MAX_TIMER_MS } from "./handler-context.js";
import { isLoopbackName, refusedOrigin } from "./origin-policy.js";

/**
 * Checks every HTTP request passes before any route runs, on every runtime and transport
 * (issue 11): the DNS-rebinding rule and deadlines too long for a timer.
 */

export interface GuardPolicy {
  readonly allowedOrigins: readonly string[];
  readonly localOnly: boolean;
}

type HeaderGet = (name: string) => string | null | undefined;

/**
 * Why a request is refused (403), if it is. On a server bound to loopback, a web page whose
 * DNS name was rebound to 127.0.0.1 reaches us with its own name in Host (and Origin): the
 * bridge refused it, but Connect, gRPC-Web, the demo and /metrics answered, so such a page
 * could COLLECT, COMMIT, read the reply and interrupt. Every request on a loopback server must
 * name the server by a loopback name (or a host of PTT_ALLOWED_ORIGINS), and a browser's
 * Origin must pass the bridge's own rule.
 */
export function refusedRequest(get: HeaderGet, policy: GuardPolicy): string | undefined {
  const host = get("host") ?? get(":authority") ?? undefined;
  const origin = get("origin") ?? undefined;
  if (policy.localOnly && host !== undefined && !allowedHost(host, policy)) {
    return `host: ${host.slice(0, 100)} is not a loopback name; this server listens on loopback only`;
  }
  if (origin === undefined) return undefined;
  const headers = new Headers();
  headers.set("origin", origin);
  if (host !== undefined) headers.set("host", host);
  return refusedOrigin(headers, policy.allowedOrigins, policy.localOnly);
}

function allowedHost(host: string, policy: GuardPolicy): boolean {
  const hostname = hostnameOf(host);
  if (hostname === null) return false;
  if (isLoopbackName(hostname)) return true;
  return policy.allowedOrigins.some((o) => {
    if (o === "*") return false;
    try {
      return new URL(o).hostname === hostname;
    } catch {
      return false;
    }
  });
}

// Host header → its hostname (null: not a host), for the few names clients send: a URL
// parsed for every request was ~3 µs of the ~100 µs of CPU a gRPC COLLECT costs on Node.
const hostnames = new Map<string, string | null>();
const MAX_HOSTNAMES = 64;

function hostnameOf(host: string): string | null {
  let hostname = hostnames.get(host);
  if (hostname !== undefined) return hostname;
  try {
    hostname = new URL(`http://${host}`).hostname;
  } catch {
    hostname = null;
  }
  // Odd Host values (anyone may send any) are parsed each time, never kept.
  if (hostnames.size < MAX_HOSTNAMES) hostnames.set(host, hostname);
  return hostname;
}

const NONE: readonly string[] = Object.freeze([]);
const GRPC_TIMEOUT = /^(\d{1,8})([HMSmun])$/;
const UNIT_MS: Record<string, number> = {
  H: 3_600_000,
  M: 60_000,
  S: 1000,
  m: 1,
  u: 1e-3,
  n: 1e-6,
};

/**
 * The deadline headers that ask for more than a timer can hold: dropped before connect reads
 * them, since connect's timer then fires after ~1 ms (Node's TimeoutOverflowWarning) and a
 * COMMIT whose buffer was consumed ended DEADLINE_EXCEEDED. Such a deadline is no deadline.
 */
export function overlongDeadlineHeaders(get: HeaderGet): readonly string[] {
  const grpc = get("grpc-timeout");
  const connect = get("connect-timeout-ms");
  // Most requests carry neither: no array for them.
  if (!grpc && !connect) return NONE;
  const out: string[] = [];
  const m = grpc ? GRPC_TIMEOUT.exec(grpc) : null;
  if (m && Number(m[1]) * (UNIT_MS[m[2] as string] as number) > MAX_TIMER_MS) {
    out.push("grpc-timeout");
  }
  if (connect && /^\d{1,20}$/.test(connect) && Number(connect) > MAX_TIMER_MS) {
    out.push("connect-timeout-ms");
  }
  return out;
}
