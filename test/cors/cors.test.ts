import { createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFetchApp } from "../../src/core/fetch-app.js";
import { createPttCore } from "../../src/core/ptt-core.js";
import { StreamingService } from "../../src/gen/streaming_pb.js";
import { type NodeServer, startNodeServer } from "../../src/runtimes/node/server.js";
import { collect, newDevice, newSession } from "../contract/calls.js";

// CORS for Connect and gRPC-Web from PTT_ALLOWED_ORIGINS: preflights answered by hono/cors
// with connect's header lists, calls answered with the origin and the headers a page may read.
const ALLOWED = "https://app.example";
const FOREIGN = "https://evil.example";
const PATH = "/streaming.StreamingService/StreamAudio";

function withHost(headers: HeadersInit | undefined): Headers {
  const h = new Headers(headers);
  h.set("host", "127.0.0.1");
  return h;
}

type Fetch = (path: string, init: RequestInit) => Promise<Response>;

function preflight(fetchAt: Fetch, origin: string): Promise<Response> {
  return fetchAt(PATH, {
    method: "OPTIONS",
    headers: {
      origin,
      "access-control-request-method": "POST",
      "access-control-request-headers": "authorization,connect-protocol-version,content-type",
    },
  });
}

function corsCases(name: string, fetchAt: () => Fetch) {
  describe(`CORS on ${name}`, () => {
    it("a preflight from an allowed origin: 204 allowing POST, Authorization and connect's headers", async () => {
      const res = await preflight(fetchAt(), ALLOWED);
      expect(res.status).toBe(204);
      expect(res.headers.get("access-control-allow-origin")).toBe(ALLOWED);
      expect(res.headers.get("access-control-allow-methods")).toBe("POST,GET");
      const allowed = (res.headers.get("access-control-allow-headers") ?? "").toLowerCase();
      for (const h of ["authorization", "connect-protocol-version", "content-type", "x-grpc-web"]) {
        expect(allowed.split(","), h).toContain(h);
      }
      expect(res.headers.get("access-control-allow-credentials")).toBeNull();
    });

    it("a preflight from another origin: no Access-Control-Allow-Origin (the browser refuses)", async () => {
      const res = await preflight(fetchAt(), FOREIGN);
      expect(res.headers.get("access-control-allow-origin")).toBeNull();
    });

    it("a Connect call from an allowed origin is readable, ptt trailers exposed; another origin's is not", async () => {
      const body = JSON.stringify(collect(newDevice("cors"), newSession(), 1, "hi"));
      const frame = new Uint8Array(5 + body.length);
      new DataView(frame.buffer).setUint32(1, body.length);
      frame.set(new TextEncoder().encode(body), 5);
      const call = (origin: string) =>
        fetchAt()(PATH, {
          method: "POST",
          headers: { origin, "content-type": "application/connect+json" },
          body: frame,
        });
      const ok = await call(ALLOWED);
      expect(ok.status).toBe(200);
      expect(ok.headers.get("access-control-allow-origin")).toBe(ALLOWED);
      const exposed = (ok.headers.get("access-control-expose-headers") ?? "")
        .toLowerCase()
        .split(",");
      for (const h of [
        "ptt-collect",
        "ptt-last-seq",
        "ptt-turn-id",
        "ptt-retry-after-ms",
        "grpc-status",
      ]) {
        expect(exposed, h).toContain(h);
      }
      expect(ok.headers.get("vary")).toMatch(/origin/i);
      await ok.arrayBuffer();
      const foreign = await call(FOREIGN);
      expect(foreign.headers.get("access-control-allow-origin")).toBeNull();
      await foreign.arrayBuffer();
    });
  });
}

let server: NodeServer;
beforeAll(async () => {
  server = await startNodeServer({ port: 0, graceMs: 0, config: { allowedOrigins: [ALLOWED] } });
});
afterAll(() => server?.close(0));

// Node: preflight and calls over real HTTP/1.1 sockets.
corsCases("Node (HTTP/1.1)", () => (path, init) => fetch(`${server.url}${path}`, init));

// Bun, Deno and Workers serve the same fetch app: driven in process here.
const app = createFetchApp(createPttCore({ allowedOrigins: [ALLOWED] }));
corsCases(
  "the fetch app (Bun, Deno, Workers)",
  // A server's request always has a Host; a bare Request made here has none.
  () => (path, init) =>
    app(new Request(`http://127.0.0.1${path}`, { ...init, headers: withHost(init.headers) })),
);

describe("CORS on Node: the calls' own answers over each protocol", () => {
  const withOrigin: Interceptor = (next) => (req) => {
    req.header.set("origin", ALLOWED);
    return next(req);
  };
  const transports: Record<string, () => Transport> = {
    "gRPC-Web (HTTP/1.1)": () =>
      createGrpcWebTransport({
        baseUrl: server.url,
        httpVersion: "1.1",
        interceptors: [withOrigin],
      }),
    "Connect (HTTP/2)": () =>
      createConnectTransport({ baseUrl: server.url, httpVersion: "2", interceptors: [withOrigin] }),
  };
  for (const [name, make] of Object.entries(transports)) {
    it(name, async () => {
      const client = createClient(StreamingService, make());
      let headers = new Headers();
      for await (const _ of client.streamAudio(collect(newDevice("cors"), newSession(), 1, "x"), {
        onHeader: (h) => {
          headers = h;
        },
      })) {
        // the ack
      }
      expect(headers.get("access-control-allow-origin")).toBe(ALLOWED);
    });
  }
});
