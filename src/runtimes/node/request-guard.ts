import type * as http from "node:http";
import * as http2 from "node:http2";
import type { Duplex } from "node:stream";
import {
  type GuardPolicy,
  overlongDeadlineHeaders,
  refusedRequest,
} from "../../core/request-guard.js";
import type { StreamHandler } from "./grpc-fast-path.js";

// core's request guard (DNS rebinding, overlong deadlines) on node:http and node:http2, and
// how a request whose answer came before its body ended is wound down on each.

function headerOf(headers: http.IncomingHttpHeaders | http2.IncomingHttpHeaders) {
  return (name: string) => {
    const v = headers[name];
    return Array.isArray(v) ? v.join(", ") : v;
  };
}

/** HTTP/1.1: true when the request was answered here (403); drops overlong deadlines. */
export function guardH1(
  policy: GuardPolicy,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): boolean {
  const get = headerOf(req.headers);
  const refused = refusedRequest(get, policy);
  const socket = req.socket;
  res.once("finish", () => drainAfterAnswer(req, socket));
  if (refused) {
    res.writeHead(403, { "content-type": "text/plain", connection: "close" });
    res.end(`${refused}\n`);
    return true;
  }
  for (const name of overlongDeadlineHeaders(get)) delete req.headers[name];
  return false;
}

/** How long a client may go on uploading a request that was already answered. */
const LINGER_MS = 5000;

/**
 * An answer may come before the request's body ended (RESOURCE_EXHAUSTED on a message over the
 * limit, a bad header). node:http then kept the unread request (connect destroys it), its
 * parser stopped reading the socket, the client still writing never read the status, and TCP
 * reset the connection seconds later. The rest of the body is now pulled off the wire and
 * dropped the way node:http drops an unread body itself (IncomingMessage#_dump, which its
 * parser honours even for a destroyed request), for LINGER_MS at most; the connection then
 * goes on with its next request.
 */
function drainAfterAnswer(req: http.IncomingMessage, socket: Duplex): void {
  if (req.complete || socket.destroyed) return;
  const timer = setTimeout(() => {
    if (!req.complete) socket.destroy();
  }, LINGER_MS);
  timer.unref();
  socket.once("close", () => clearTimeout(timer));
  req.once("end", () => clearTimeout(timer));
  (req as http.IncomingMessage & { _dump(): void })._dump();
  socket.resume();
}

/**
 * HTTP/2, in front of every other stream handler: refuses rebound hosts (403) and drops
 * overlong deadlines.
 */
export function guardH2(policy: GuardPolicy): StreamHandler {
  return (stream, headers) => {
    const get = headerOf(headers);
    const refused = refusedRequest(get, policy);
    if (refused) {
      stream.on("error", () => {});
      // Read and drop what the client still sends, so it is not left waiting for a window.
      stream.on("data", () => {});
      stream.respond({ ":status": 403, "content-type": "text/plain" });
      stream.end(`${refused}\n`);
      return true;
    }
    for (const name of overlongDeadlineHeaders(get)) delete headers[name];
    return false;
  };
}

/**
 * HTTP/2 requests of connect's pipeline (Connect, gRPC-Web; gRPC without the fast path): an
 * answer that came before the request ended left the request unread, so its flow-control
 * window never reopened and a client still uploading hung without reading the status. The
 * rest is read and dropped, for LINGER_MS at most, then the stream is reset (CANCEL). (A
 * RST_STREAM(NO_ERROR) right after the answer could overtake the answer's queued frames.)
 */
export function lingerH2(req: http2.Http2ServerRequest): void {
  const stream = req.stream;
  // The stream's own "finish" (its writable side ended): the compatibility response emits
  // "finish" only once the whole stream closed, which is what never happens here.
  stream.once("finish", () => {
    if (stream.readableEnded || stream.destroyed) return;
    const timer = setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), LINGER_MS);
    timer.unref();
    stream.once("close", () => clearTimeout(timer));
    // The compatibility request (connect may have destroyed it) no longer takes the bytes.
    stream.removeAllListeners("data");
    stream.on("data", () => {});
    stream.resume();
  });
}
