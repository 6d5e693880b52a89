import type * as http from "node:http";
import * as http2 from "node:http2";
import { type ContextValues, createContextValues } from "@connectrpc/connect";
import { CALL_TRANSPORT, type CallTransport } from "../../core/call-transport.js";

/**
 * The connection of a request connect's Node adapter serves (its contextValues): the HTTP/2
 * session, or the HTTP/1.1 socket. A stalled reply is cut there: HTTP/2 resets the stream with
 * ENHANCE_YOUR_CALM (RESOURCE_EXHAUSTED to gRPC and Connect clients); HTTP/1.1 has no way to
 * end one response early but to close its connection.
 */
export function nodeContextValues(
  req: http.IncomingMessage | http2.Http2ServerRequest,
): ContextValues {
  return createContextValues().set(CALL_TRANSPORT, nodeCallTransport(req));
}

function nodeCallTransport(req: http.IncomingMessage | http2.Http2ServerRequest): CallTransport {
  if ("stream" in req) {
    const stream = req.stream;
    return {
      connection: stream.session ?? stream,
      endStalled() {
        if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
      },
    };
  }
  const socket = req.socket;
  return {
    connection: socket,
    endStalled() {
      socket.destroy();
    },
  };
}
