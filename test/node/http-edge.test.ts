// Issue 11's defects at the HTTP edge of the Node server, over raw sockets: DNS rebinding on
// every route, upgrade offers that got no answer, WebSocket handshakes the bridge must refuse,
// and early answers that stranded a client still uploading.
import * as http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { StreamRequestSchema } from "../../src/gen/streaming_pb.js";
import { type NodeServer, startNodeServer } from "../../src/runtimes/node/server.js";
import { newDevice, newSession } from "../contract/calls.js";
import { envelope, envelopes, h2Request, rawHttp1, SA } from "../support/raw-rpc.js";

const REQUEST_LIMIT = 64 * 1024;

function interrupt(host: string, origin?: string): string {
  const body = `{"hardwareId":"${newDevice()}"}`;
  return [
    "POST /streaming.StreamingService/InterruptSession HTTP/1.1",
    `Host: ${host}`,
    ...(origin ? [`Origin: ${origin}`] : []),
    "Content-Type: application/json",
    `Content-Length: ${body.length}`,
    "Connection: close",
    "",
    body,
  ].join("\r\n");
}

const statusOf = (text: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);

describe("HTTP edge (issue 11)", () => {
  let server: NodeServer;
  beforeAll(async () => {
    server = await startNodeServer({
      port: 0,
      config: { localOnly: true, limits: { maxRequestBytes: REQUEST_LIMIT } },
    });
  });
  afterAll(() => server.close(0));

  it("a rebound host is refused on every route, not only the bridge (#7)", async () => {
    const evil = `evil.example:${server.port}`;
    const forged = await rawHttp1(server.port, interrupt(evil, `http://${evil}`));
    expect(statusOf(forged.text)).toBe(403);
    expect(forged.text).toContain("not a loopback name");
    // Same-origin GETs carry no Origin: the Host alone must be refused.
    for (const path of ["/", "/metrics", "/healthz"]) {
      const get = await rawHttp1(
        server.port,
        `GET ${path} HTTP/1.1\r\nHost: ${evil}\r\nConnection: close\r\n\r\n`,
      );
      expect(statusOf(get.text), path).toBe(403);
    }
    // HTTP/2 (gRPC and Connect over h2c) names the host in :authority.
    const h2 = await h2Request(
      server.url,
      {
        ":path": SA,
        ":authority": evil,
        "content-type": "application/grpc",
        te: "trailers",
      },
      envelope(new Uint8Array()),
    );
    expect(h2.headers[":status"]).toBe(403);
    // The same calls by loopback names are served.
    for (const name of ["127.0.0.1", "localhost"]) {
      const ok = await rawHttp1(
        server.port,
        interrupt(`${name}:${server.port}`, `http://${name}:${server.port}`),
      );
      expect(statusOf(ok.text), name).toBe(200);
    }
    // Native clients send no Origin.
    expect(
      statusOf((await rawHttp1(server.port, interrupt(`127.0.0.1:${server.port}`))).text),
    ).toBe(200);
  });

  it("an HTTP/1.1 request that offers an upgrade we do not do is answered (#8)", async () => {
    const h2c = await rawHttp1(
      server.port,
      `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n`,
      { until: (t) => t.endsWith("\r\n\r\nok\n") },
    );
    expect(statusOf(h2c.text)).toBe(200);
    expect(h2c.text).toMatch(/\r\n\r\nok\n$/);
    const body = `{"hardwareId":"${newDevice()}"}`;
    const post = await rawHttp1(
      server.port,
      `POST /streaming.StreamingService/InterruptSession HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, close\r\nUpgrade: foo\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
    expect(statusOf(post.text)).toBe(200);
    expect(post.text).toContain('"success":true');
    // A WebSocket upgrade on a path that is not the bridge's gets 404, not a dropped socket.
    const ws = await rawHttp1(
      server.port,
      `GET /elsewhere HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
    );
    expect(statusOf(ws.text)).toBe(404);
  });

  it("the bridge refuses WebSocket version 8 (426) and an origin with user info (403)", async () => {
    const v8 = await rawHttp1(
      server.port,
      `GET /v1/bridge HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
    );
    expect(statusOf(v8.text)).toBe(426);
    expect(v8.text.toLowerCase()).toContain("sec-websocket-version: 13");
    const url = `${server.url.replace("http", "ws")}/v1/bridge`;
    const status = await new Promise<string>((resolve) => {
      const ws = new WebSocket(url, ["ptt.bridge.v1"], {
        headers: { origin: `http://evil@127.0.0.1:${server.port}` },
      });
      ws.once("open", () => {
        ws.close();
        resolve("open");
      });
      ws.once("unexpected-response", (_req, res) => resolve(String(res.statusCode)));
      ws.once("error", () => resolve("error"));
    });
    expect(status).toBe("403");
  });

  it("over HTTP/1.1, a client still uploading an over-limit request reads its status (#9)", {
    timeout: 20_000,
  }, async () => {
    // Write the whole request first, then read: the status must come, not ECONNRESET.
    const message = toBinary(
      StreamRequestSchema,
      create(StreamRequestSchema, {
        hardwareId: newDevice(),
        sessionId: newSession(),
        phase: 1,
        // Far more than the kernel's socket buffers hold: the write completes only if read.
        chunkText: "x".repeat(8 * 1024 * 1024),
      }),
    );
    const body = envelope(message);
    const head = `POST ${SA} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/connect+proto\r\nContent-Length: ${body.length}\r\n\r\n`;
    const r = await rawHttp1(server.port, Buffer.concat([Buffer.from(head), body]), {
      timeoutMs: 15_000,
      readAfterWrite: true,
      until: (t) => t.includes("resource_exhausted"),
    });
    expect(r.error).toBeUndefined();
    expect(statusOf(r.text)).toBe(200);
    expect(r.text).toContain("resource_exhausted");
  });

  it("over HTTP/2, a Connect client still uploading an over-limit request gets its answer and is let go (#9)", {
    timeout: 20_000,
  }, async () => {
    const session = http2.connect(server.url);
    try {
      const req = session.request({
        ":method": "POST",
        ":path": SA,
        "content-type": "application/connect+proto",
      });
      const chunks: Buffer[] = [];
      req.on("data", (d: Buffer) => chunks.push(d));
      const ended = new Promise<void>((resolve, reject) => {
        req.on("end", resolve);
        req.on("error", reject);
      });
      // The prefix announces a message over the limit; the client then keeps sending.
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(4 * REQUEST_LIMIT, 1);
      req.write(prefix);
      const chunk = Buffer.alloc(16 * 1024);
      const wrote = (async () => {
        for (let sent = 0; sent < 4 * REQUEST_LIMIT && !req.destroyed; sent += chunk.length) {
          if (!req.write(chunk)) {
            await new Promise<void>((resolve) => {
              req.once("drain", resolve);
              req.once("close", resolve);
            });
          }
        }
        if (!req.destroyed) req.end();
      })();
      await ended;
      const parts = envelopes(Buffer.concat(chunks));
      expect(JSON.parse(parts.at(-1)?.data.toString() ?? "{}").error.code).toBe(
        "resource_exhausted",
      );
      // The upload is not left hanging: it finishes (the server read and dropped the rest).
      await wrote;
    } finally {
      session.destroy();
    }
  });
});
