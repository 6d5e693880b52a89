// Issue 11 #4 and #5: idle and half-open connections are closed, and open connections and
// HTTP/2 streams are bounded, on the Node server's one port. Raw sockets and node:http2 clients
// against small configured timeouts; each wait is generous (a loaded machine), each bound is
// checked by what the server did (closed, reset, refused), not by how fast.
import * as http2 from "node:http2";
import * as net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NodeServer, startNodeServer } from "../../src/runtimes/node/server.js";
import { SA } from "../support/raw-rpc.js";

const H2_PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/** A raw TCP connection; `closed` resolves with what the server sent before it closed. */
function rawConnect(port: number): Promise<{ socket: net.Socket; closed: Promise<string> }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    socket.on("data", (d) => chunks.push(d));
    socket.on("error", () => {});
    const closed = new Promise<string>((r) =>
      socket.once("close", () => r(Buffer.concat(chunks).toString("latin1"))),
    );
    socket.once("connect", () => resolve({ socket, closed }));
    socket.once("error", reject);
  });
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    p,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms),
    ),
  ]);
}

describe("idle and half-open connections are closed (issue 11 #4)", () => {
  let server: NodeServer;
  beforeAll(async () => {
    server = await startNodeServer({
      port: 0,
      connections: {
        headersTimeoutMs: 400,
        requestTimeoutMs: 800,
        keepAliveTimeoutMs: 300,
        idleTimeoutMs: 500,
      },
    });
  });
  afterAll(() => server.close(0));

  it("a connection that says nothing is dropped after the headers timeout", async () => {
    const { closed } = await rawConnect(server.port);
    expect(await within(closed, 10_000, "silent connection closed")).toBe("");
  });

  it("slowloris: HTTP/1.1 headers trickled byte by byte are cut (408) though bytes keep coming", async () => {
    const { socket, closed } = await rawConnect(server.port);
    socket.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    const trickle = setInterval(() => {
      if (!socket.destroyed) socket.write("X-Slow: a\r\n");
    }, 50);
    try {
      const text = await within(closed, 10_000, "trickled headers cut");
      expect(text).toMatch(/^HTTP\/1\.1 408 /);
    } finally {
      clearInterval(trickle);
    }
  });

  it("a WebSocket upgrade whose headers never end is cut", async () => {
    const { socket, closed } = await rawConnect(server.port);
    socket.write(
      "GET /v1/bridge HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
    );
    const text = await within(closed, 10_000, "unfinished upgrade cut");
    expect(text).toMatch(/^HTTP\/1\.1 408 /);
  });

  it("a request whose body never comes is cut after the request timeout", async () => {
    const { socket, closed } = await rawConnect(server.port);
    socket.write(
      `POST ${SA} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/connect+proto\r\nContent-Length: 100\r\n\r\nab`,
    );
    const text = await within(closed, 10_000, "unfinished body cut");
    expect(text).toMatch(/^HTTP\/1\.1 408 /);
  });

  it("a kept-alive HTTP/1.1 connection idle after its answer is closed", async () => {
    const { socket, closed } = await rawConnect(server.port);
    socket.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    const text = await within(closed, 10_000, "idle keep-alive closed");
    expect(text).toMatch(/^HTTP\/1\.1 200 /);
  });

  it("HTTP/2 preface only, never SETTINGS: closed", async () => {
    const { socket, closed } = await rawConnect(server.port);
    socket.write(H2_PREFACE);
    await within(closed, 10_000, "preface-only connection closed");
  });

  it("HTTP/2 idle after SETTINGS: GOAWAY, then closed", async () => {
    const session = http2.connect(server.url);
    session.on("error", () => {});
    const goaway = new Promise<void>((r) => session.once("goaway", () => r()));
    const closed = new Promise<void>((r) => session.once("close", () => r()));
    await new Promise<void>((r) => session.once("remoteSettings", () => r()));
    await within(goaway, 10_000, "GOAWAY to an idle connection");
    await within(closed, 10_000, "idle HTTP/2 connection closed");
  });

  it("HTTP/2 headers without a body: the stream is reset after the request timeout", async () => {
    const session = http2.connect(server.url);
    session.on("error", () => {});
    const req = session.request(
      { ":method": "POST", ":path": SA, "content-type": "application/grpc", te: "trailers" },
      { endStream: false },
    );
    req.on("error", () => {});
    const code = await within(
      new Promise<number>((r) => req.once("close", () => r(req.rstCode ?? 0))),
      10_000,
      "bodiless stream reset",
    );
    expect(code).toBe(http2.constants.NGHTTP2_CANCEL);
    session.destroy();
  });
});

describe("connections and HTTP/2 streams are capped (issue 11 #4, #5)", () => {
  let server: NodeServer;
  beforeAll(async () => {
    server = await startNodeServer({
      port: 0,
      connections: { maxConnections: 3, maxConcurrentStreams: 3, maxOpenStreams: 4 },
    });
  });
  afterAll(() => server.close(0));

  it("past max_connections a new connection is closed at once; a freed place is taken again", async () => {
    const held = await Promise.all([1, 2, 3].map(() => rawConnect(server.port)));
    // Let the server count them before the next arrives.
    await new Promise((r) => setTimeout(r, 100));
    const extra = await rawConnect(server.port);
    extra.socket.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    expect(await within(extra.closed, 10_000, "connection past the cap closed")).toBe("");
    const first = held[0] as Awaited<ReturnType<typeof rawConnect>>;
    first.socket.destroy();
    await first.closed;
    await new Promise((r) => setTimeout(r, 100));
    const again = await rawConnect(server.port);
    again.socket.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    expect(await within(again.closed, 10_000, "served")).toMatch(/^HTTP\/1\.1 200 /);
    for (const h of held) h.socket.destroy();
  });

  it("MAX_CONCURRENT_STREAMS is advertised, and open streams past the instance cap are refused", async () => {
    await new Promise((r) => setTimeout(r, 100));
    const sessions = [http2.connect(server.url), http2.connect(server.url)];
    for (const s of sessions) s.on("error", () => {});
    const settings = await Promise.all(
      sessions.map(
        (s) =>
          new Promise<http2.Settings>((r) => s.once("remoteSettings", (settings) => r(settings))),
      ),
    );
    for (const s of settings) expect(s.maxConcurrentStreams).toBe(3);
    // Three unfinished requests on each connection: six streams, four may be open at once.
    const outcomes: Promise<number>[] = [];
    for (const s of sessions) {
      for (let i = 0; i < 3; i++) {
        const req = s.request(
          { ":method": "POST", ":path": SA, "content-type": "application/grpc", te: "trailers" },
          { endStream: false },
        );
        req.on("error", () => {});
        outcomes.push(
          new Promise((r) => {
            req.once("close", () => r(req.rstCode ?? 0));
            setTimeout(() => r(-1), 1500);
          }),
        );
      }
    }
    const codes = await Promise.all(outcomes);
    // -1: still open after 1.5 s (accepted, waiting for its body).
    expect(codes.filter((c) => c === -1)).toHaveLength(4);
    expect(codes.filter((c) => c === http2.constants.NGHTTP2_REFUSED_STREAM)).toHaveLength(2);
    for (const s of sessions) s.destroy();
  });
});
