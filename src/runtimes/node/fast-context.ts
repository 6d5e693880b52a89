import type { IncomingHttpHeaders } from "node:http2";
import type { DescMethod } from "@bufbuild/protobuf";
import type { CallTransport } from "../../core/call-transport.js";
import { LazyHandlerContext } from "../../core/handler-context.js";

export { ABORTED } from "../../core/handler-context.js";

/**
 * The gRPC fast path's HandlerContext: a LazyHandlerContext whose request headers and url
 * come from the node:http2 stream's headers, only when read. Its signal also aborts on the
 * client's RST_STREAM or hang-up (the fast path calls abort(reason)).
 */
export class FastHandlerContext extends LazyHandlerContext {
  constructor(
    method: DescMethod,
    private readonly nodeHeaders: IncomingHttpHeaders,
    shutdownSignal: AbortSignal,
    timeoutMs: number | undefined,
    transport: CallTransport,
  ) {
    super({ method, protocolName: "grpc", shutdownSignal, timeoutMs, transport });
  }

  protected override readRequestHeader(): Headers {
    // Like connect-node's nodeHeaderToWebHeader: every header but the pseudo-headers.
    const h = new Headers();
    for (const [name, value] of Object.entries(this.nodeHeaders)) {
      if (name.startsWith(":") || value === undefined) continue;
      if (Array.isArray(value)) for (const v of value) h.append(name, v);
      else h.append(name, String(value));
    }
    return h;
  }

  protected override readRequestHeaderValue(name: string): string | null {
    const n = name.toLowerCase();
    // Pseudo-headers are not request headers (Headers.get would throw on the name): as it does.
    if (n.startsWith(":")) return super.readRequestHeaderValue(name);
    const value = this.nodeHeaders[n];
    if (value === undefined) return null;
    // As the Headers readRequestHeader builds: each value trimmed, repeats joined with ", ".
    return Array.isArray(value) ? value.map(trimHttp).join(", ") : trimHttp(String(value));
  }

  protected override readUrl(): string {
    const authority = this.nodeHeaders[":authority"] ?? this.nodeHeaders.host ?? "localhost";
    return new URL(this.nodeHeaders[":path"] ?? "/", `http://${authority}`).toString();
  }
}

/** The Fetch standard's value normalisation: leading and trailing HTTP whitespace removed. */
function trimHttp(value: string): string {
  return value.replace(/^[\t\n\r ]+|[\t\n\r ]+$/g, "");
}
