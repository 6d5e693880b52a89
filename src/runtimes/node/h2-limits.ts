import * as http2 from "node:http2";
import type { ConnectionLimits } from "../../core/connection-limits.js";
import type { StreamHandler } from "./grpc-fast-path.js";

type H2Limits = Pick<
  ConnectionLimits,
  "idleTimeoutMs" | "requestTimeoutMs" | "maxConcurrentStreams" | "maxOpenStreams"
>;

/** node:http2 server options: SETTINGS_MAX_CONCURRENT_STREAMS advertised to every client. */
export function h2ServerOptions(limits: H2Limits): http2.ServerOptions {
  return { settings: { maxConcurrentStreams: limits.maxConcurrentStreams } };
}

/** A session's open streams, and the timer that closes it once it has none for a while. */
interface Idle {
  streams: number;
  timer: ReturnType<typeof setTimeout>;
}
interface Tracked {
  /** When the stream opened (its request must end within requestTimeoutMs). */
  at: number;
  idle: Idle | undefined;
}
const TRACKED = Symbol("ptt open stream");
const IDLE = Symbol("ptt session idle");
type TrackedStream = http2.ServerHttp2Stream & { [TRACKED]?: Tracked };
type TrackedSession = http2.ServerHttp2Session & { [IDLE]?: Idle };

/**
 * The HTTP/2 bounds of one node:http2 server (Node's one port; Bun's and Deno's gRPC port):
 * - at most `maxOpenStreams` streams open at once over all its connections: a new one past it
 *   is reset with REFUSED_STREAM (nothing was processed, so clients may retry it);
 * - a request must end (END_STREAM) within `requestTimeoutMs`, else its stream is reset
 *   (CANCEL): headers without a body hold nothing for longer;
 * - a connection without an open stream for `idleTimeoutMs` (only a preface, SETTINGS and
 *   nothing more, or its last call ended) gets GOAWAY and closes.
 * Returns the stream handler to put first (it takes only the streams it refuses), and a
 * `close` that stops its sweep.
 */
export function guardH2Server(
  server: http2.Http2Server,
  limits: H2Limits,
): { handler: StreamHandler; openStreams(): number; close(): void } {
  let open = 0;
  // Streams whose request has not ended yet, oldest first (a Set keeps insertion order).
  const receiving = new Set<TrackedStream>();
  function onEnd(this: TrackedStream) {
    receiving.delete(this);
  }
  function onClose(this: TrackedStream) {
    open--;
    receiving.delete(this);
    const idle = this[TRACKED]?.idle;
    // One timer per session, re-armed (not re-made) each time it goes idle.
    if (idle && --idle.streams === 0) idle.timer.refresh();
  }
  const sweepMs = Math.max(10, Math.min(1000, Math.floor(limits.requestTimeoutMs / 4)));
  const sweep = setInterval(() => {
    const cutoff = Date.now() - limits.requestTimeoutMs;
    for (const stream of receiving) {
      if ((stream[TRACKED] as Tracked).at > cutoff) break;
      receiving.delete(stream);
      if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
    }
  }, sweepMs);
  sweep.unref();

  server.on("session", (session) => {
    const s = session as TrackedSession;
    const idle: Idle = {
      streams: 0,
      timer: setTimeout(() => {
        if (idle.streams === 0 && !s.closed && !s.destroyed) s.close();
      }, limits.idleTimeoutMs),
    };
    idle.timer.unref();
    s[IDLE] = idle;
    s.once("close", () => clearTimeout(idle.timer));
  });

  const handler: StreamHandler = (stream) => {
    if (open >= limits.maxOpenStreams) {
      stream.on("error", () => {});
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return true;
    }
    open++;
    const s = stream as TrackedStream;
    const idle = (stream.session as TrackedSession | undefined)?.[IDLE];
    if (idle) idle.streams++;
    s[TRACKED] = { at: Date.now(), idle };
    // Each comes once per stream: `on`, as `once` wraps the listener anew for every stream.
    s.on("close", onClose);
    if (!stream.readableEnded) {
      receiving.add(s);
      s.on("end", onEnd);
    }
    return false;
  };
  return { handler, openStreams: () => open, close: () => clearInterval(sweep) };
}
