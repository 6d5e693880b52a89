import { existsSync } from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NodeServer, startNodeServer } from "../../src/runtimes/node/server.js";

// CORS as a real browser enforces it: pages on two other origins (other ports of 127.0.0.1)
// call Connect with fetch, with an Authorization header (so the browser preflights). The
// listed origin's page reads the reply and the ptt-turn-id header; the other's fetch fails.
const CHROMIUM = "/usr/bin/chromium";
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"];
const missing = !existsSync(CHROMIUM);

async function pageServer(): Promise<{ origin: string; close(): Promise<void> }> {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/html" }).end("<!doctype html><title>page</title>");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

/** Runs in the page: a COLLECT then a COMMIT over Connect (JSON streaming) with fetch. */
async function holdFromPage(base: string): Promise<{ text: string; turnId: string | null }> {
  const hardwareId = `cors-page-${Math.random().toString(16).slice(2)}`;
  const sessionId = crypto.randomUUID();
  const call = async (req: object) => {
    const json = new TextEncoder().encode(JSON.stringify(req));
    const body = new Uint8Array(5 + json.length);
    new DataView(body.buffer).setUint32(1, json.length);
    body.set(json, 5);
    const res = await fetch(`${base}/streaming.StreamingService/StreamAudio`, {
      method: "POST",
      headers: {
        "content-type": "application/connect+json",
        "connect-protocol-version": "1",
        authorization: "Bearer page-token",
      },
      body,
    });
    const bytes = new Uint8Array(await res.arrayBuffer());
    const messages: { textChunk?: string; error?: { message: string } }[] = [];
    for (let at = 0; at + 5 <= bytes.length; ) {
      const len = new DataView(bytes.buffer, at + 1, 4).getUint32(0);
      messages.push(JSON.parse(new TextDecoder().decode(bytes.subarray(at + 5, at + 5 + len))));
      at += 5 + len;
    }
    const failed = messages.find((m) => m.error);
    if (failed?.error) throw new Error(failed.error.message);
    return { messages, turnId: res.headers.get("ptt-turn-id") };
  };
  await call({
    hardwareId,
    sessionId,
    phase: "REQUEST_PHASE_COLLECT",
    chunkSeq: 1,
    chunkText: "from the page",
  });
  const reply = await call({ hardwareId, sessionId, phase: "REQUEST_PHASE_COMMIT" });
  return { text: reply.messages.map((m) => m.textChunk ?? "").join(""), turnId: reply.turnId };
}

describe.skipIf(missing && !process.env.CI)("CORS in headless Chromium", () => {
  let server: NodeServer;
  let browser: Browser;
  let listed: Awaited<ReturnType<typeof pageServer>>;
  let other: Awaited<ReturnType<typeof pageServer>>;

  beforeAll(async () => {
    listed = await pageServer();
    other = await pageServer();
    server = await startNodeServer({
      port: 0,
      graceMs: 0,
      config: { allowedOrigins: [listed.origin] },
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await server?.close(0);
    await listed?.close();
    await other?.close();
  });

  it("a page on a listed origin holds and commits, and reads ptt-turn-id", async () => {
    const page = await browser.newPage();
    await page.goto(listed.origin);
    const result = await page.evaluate(holdFromPage, server.url);
    expect(result.text).toBe("from the page");
    expect(result.turnId).toMatch(/^[0-9a-f-]{36}$/);
    await page.close();
  });

  it("a page on another origin: the browser refuses the call (no CORS answer)", async () => {
    const page = await browser.newPage();
    await page.goto(other.origin);
    const error = await page.evaluate(holdFromPage, server.url).then(
      () => "no error",
      (err: Error) => err.message,
    );
    expect(error).toMatch(/Failed to fetch/);
    await page.close();
  });
});
