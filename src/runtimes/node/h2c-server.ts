import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { type ConnectionLimits, resolveConnectionLimits } from "../../core/connection-limits.js";
import type { PttCore } from "../../core/ptt-core.js";
import { connectRouterOptions } from "../../core/request-decoding.js";
import { routes } from "../../core/streaming-service.js";
import { nodeContextValues } from "./call-transport.js";
import { firstOf, installStreamHandler, pttGrpcFastPath } from "./grpc-fast-path.js";
import { guardH2Server, h2ServerOptions } from "./h2-limits.js";
import { guardH2, lingerH2 } from "./request-guard.js";

export interface H2cServer {
  readonly url: string;
  readonly port: number;
  /** Stops accepting; open sessions get GOAWAY and are destroyed after `forceAfterMs`. */
  close(forceAfterMs: number): Promise<void>;
}

/**
 * gRPC (and Connect / gRPC-Web over HTTP/2) on cleartext HTTP/2 through node:http2,
 * for runtimes whose own servers cannot send HTTP trailers (Bun.serve, Deno.serve).
 */
export async function listenH2c(
  core: PttCore,
  port: number,
  host: string,
  shutdownSignal: AbortSignal,
  /** grpcFastPath: see NodeServerOptions; default on. connections: the server's. */
  options: { grpcFastPath?: boolean; connections?: Readonly<ConnectionLimits> } = {},
): Promise<H2cServer> {
  const handler = connectNodeAdapter({
    routes: routes(core),
    contextValues: nodeContextValues,
    ...connectRouterOptions(core.limits.maxRequestBytes, shutdownSignal),
  });
  const limits = options.connections ?? resolveConnectionLimits();
  const server = http2.createServer(h2ServerOptions(limits), (req, res) => {
    lingerH2(req);
    handler(req, res);
  });
  // node:http2's server is a net.Server: past it new connections are closed as they arrive.
  server.maxConnections = limits.maxConnections;
  const h2Guard = guardH2Server(server, limits);
  const fastPath = options.grpcFastPath ?? true;
  installStreamHandler(
    server,
    firstOf(
      h2Guard.handler,
      guardH2(core),
      fastPath ? pttGrpcFastPath(core, shutdownSignal) : undefined,
    ),
  );
  const sessions = new Set<http2.Http2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  return {
    url: `http://${address.family === "IPv6" ? `[${address.address}]` : address.address}:${address.port}`,
    port: address.port,
    async close(forceAfterMs) {
      server.close();
      for (const s of sessions) s.close();
      // Done as soon as the last session closes; sessions still busy then are destroyed.
      const deadline = Date.now() + forceAfterMs;
      while (sessions.size > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 10));
      }
      for (const s of sessions) s.destroy();
      h2Guard.close();
    },
  };
}
