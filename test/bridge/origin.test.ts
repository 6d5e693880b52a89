import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { type NodeServer, startNodeServer } from "../../src/runtimes/node/server.js";

/** Opens the bridge with the given headers: "open", or the HTTP status it was refused with. */
function attempt(url: string, headers: Record<string, string>): Promise<string> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, ["ptt.bridge.v1"], { headers });
    ws.once("open", () => {
      ws.close();
      resolve("open");
    });
    ws.once("unexpected-response", (_req, res) => {
      resolve(String(res.statusCode));
      ws.terminate();
    });
    ws.once("error", () => resolve("error"));
  });
}

describe("bridge: browser origins", () => {
  let server: NodeServer;
  let url: string;
  beforeAll(async () => {
    server = await startNodeServer({
      port: 0,
      config: { allowedOrigins: ["https://app.example"] },
    });
    url = `${server.url.replace("http", "ws")}/v1/bridge`;
  });
  afterAll(() => server.close(0));

  it("native clients (no Origin) are served", async () => {
    expect(await attempt(url, {})).toBe("open");
  });

  it("the server's own origin is served (the demo page)", async () => {
    expect(await attempt(url, { origin: server.url })).toBe("open");
  });

  it("a listed origin is served", async () => {
    expect(await attempt(url, { origin: "https://app.example" })).toBe("open");
  });

  it("any other web page is refused with 403 before the upgrade", async () => {
    expect(await attempt(url, { origin: "https://evil.example" })).toBe("403");
    expect(await attempt(url, { origin: "null" })).toBe("403");
  });
});

describe("bridge: a server on loopback resists DNS rebinding", () => {
  let server: NodeServer;
  let url: string;
  let port: number;
  beforeAll(async () => {
    server = await startNodeServer({ port: 0, config: { localOnly: true } });
    url = `${server.url.replace("http", "ws")}/v1/bridge`;
    port = server.port;
  });
  afterAll(() => server.close(0));

  it("a page on a rebound name (Origin and Host both evil.test) is refused", async () => {
    const host = `evil.test:${port}`;
    expect(await attempt(url, { host, origin: `http://${host}` })).toBe("403");
  });

  it("the demo opened as localhost or 127.0.0.1 is served", async () => {
    for (const name of ["localhost", "127.0.0.1"]) {
      const host = `${name}:${port}`;
      expect(await attempt(url, { host, origin: `http://${host}` })).toBe("open");
    }
  });
});
