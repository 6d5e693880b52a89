import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { LazyHandlerContext } from "./handler-context.js";

/**
 * What a transport tells core about the connection a call came on, so that reply slots are
 * shared fairly between connections and a reply whose reader stalled can be cut off there.
 * Runtimes that cannot tell connections apart (Bun's and Deno's fetch servers, Workers) give
 * none: their calls count per device and per instance only.
 */
export interface CallTransport {
  /** One object per connection: the HTTP/1.1 socket, the HTTP/2 session, the bridge socket. */
  readonly connection: object;
  /**
   * Ends this call on the wire at once with RESOURCE_EXHAUSTED where the protocol can say it
   * (an HTTP/2 RST_STREAM(ENHANCE_YOUR_CALM), a bridge CallEnd), else by closing the connection,
   * dropping what still waits to be sent: its reader took nothing for reply_stall_ms.
   */
  endStalled(error: Error): void;
}

/** Set by connect routers' contextValues; LazyHandlerContext carries it as a field instead. */
export const CALL_TRANSPORT = createContextKey<CallTransport | undefined>(undefined, {
  description: "ptt-edge call transport",
});

/** The call's transport, if its runtime gave one. */
export function callTransportOf(ctx: HandlerContext): CallTransport | undefined {
  // A LazyHandlerContext builds its values on first read: a field costs nothing.
  if (ctx instanceof LazyHandlerContext) return ctx.transport;
  return ctx.values.get(CALL_TRANSPORT);
}
