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

  protected override readUrl(): string {
    const authority = this.nodeHeaders[":authority"] ?? this.nodeHeaders.host ?? "localhost";
    return new URL(this.nodeHeaders[":path"] ?? "/", `http://${authority}`).toString();
  }
}
