import { execFile } from "node:child_process";
import * as net from "node:net";
import * as path from "node:path";
import { promisify } from "node:util";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import {
  Code,
  ConnectError,
  connect,
  type Ptt,
  type WebSocketFactory,
} from "../../src/bridge/client/index.js";
import { type NodeServer, startNodeServer } from "../../src/runtimes/node/server.js";
import { newDevice } from "../contract/calls.js";

// The client library never hangs: a server that is down, a wrong path, a server that accepts
// the connection and never answers, each end release() with UNAVAILABLE naming the URL and the
// cause within connectTimeoutMs; an AbortSignal stops release() and cancels a running reply.
// Generous timeouts: only "it ends, with this error" is asserted, never how fast.

const ROOT = path.resolve(import.meta.dirname, "../..");
// No cast: the `ws` package's constructor must type-check as a WebSocketFactory.
const WS: WebSocketFactory = WebSocket;

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

async function rejection(p: Promise<unknown>): Promise<ConnectError> {
  const outcome = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(outcome).toBeInstanceOf(ConnectError);
  return outcome as ConnectError;
}

describe("bridge client: failures end calls, never hang", () => {
  let server: NodeServer;
  const clients: Ptt[] = [];
  const open = (url: string, opts: Partial<Parameters<typeof connect>[1]> = {}) => {
    const ptt = connect(url, { hardwareId: newDevice(), WebSocket: WS, ...opts });
    clients.push(ptt);
    return ptt;
  };

  beforeAll(async () => {
    server = await startNodeServer({ port: 0, config: { echoDelayMs: 100 }, graceMs: 0 });
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });
  afterAll(async () => {
    await server.close(0);
  });

  it("a server that is down: release() rejects UNAVAILABLE naming the URL and the refusal", async () => {
    const url = `ws://127.0.0.1:${await freePort()}/v1/bridge`;
    const ptt = open(url, { connectTimeoutMs: 800, minBackoffMs: 50, maxBackoffMs: 100 });
    const hold = ptt.hold();
    const chunk = hold.text("hello");
    const err = await rejection(hold.release());
    expect(err.code).toBe(Code.Unavailable);
    expect(err.rawMessage).toContain(url.split("/v1")[0]);
    expect(err.rawMessage).toContain("within 800 ms");
    expect(err.rawMessage).toContain("ECONNREFUSED");
    expect((await rejection(chunk)).code).toBe(Code.Unavailable);
    await expect(ptt.channel.ready()).rejects.toThrow(/ECONNREFUSED/);
  });

  it("a wrong path: the server answers 404 and release() says so", async () => {
    const ptt = open(`${server.url.replace("http", "ws")}/v1/brigde`, {
      connectTimeoutMs: 800,
      minBackoffMs: 50,
      maxBackoffMs: 100,
    });
    const hold = ptt.hold();
    hold.text("hello").catch(() => {});
    const err = await rejection(hold.release());
    expect(err.code).toBe(Code.Unavailable);
    expect(err.rawMessage).toContain("/v1/brigde");
    expect(err.rawMessage).toContain("404");
  });

  it("a server that accepts and never answers the handshake: UNAVAILABLE, then it retries", async () => {
    const sockets = new Set<net.Socket>();
    let connections = 0;
    const silent = net.createServer((s) => {
      connections++;
      sockets.add(s);
    });
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const { port } = silent.address() as net.AddressInfo;
    try {
      const ptt = open(`ws://127.0.0.1:${port}/v1/bridge`, {
        connectTimeoutMs: 500,
        minBackoffMs: 20,
        maxBackoffMs: 50,
      });
      const err = await rejection(ptt.interrupt());
      expect(err.code).toBe(Code.Unavailable);
      expect(err.rawMessage).toContain("no Hello from the server");
      // The hung handshake was given up: a new attempt follows.
      const deadline = Date.now() + 10_000;
      while (connections < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(connections).toBeGreaterThanOrEqual(2);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  });

  it("an AbortSignal stops release() while chunks wait for a connection; nothing is committed", async () => {
    const ptt = open(`ws://127.0.0.1:${await freePort()}/v1/bridge`, {
      connectTimeoutMs: 60_000,
      minBackoffMs: 50,
      maxBackoffMs: 100,
    });
    const hold = ptt.hold();
    hold.text("never acked").catch(() => {});
    const controller = new AbortController();
    const released = hold.release({ signal: controller.signal });
    setTimeout(() => controller.abort(new Error("key pressed again")), 100);
    const err = await rejection(released);
    expect(err.code).toBe(Code.Canceled);
    expect(err.rawMessage).toContain("before the COMMIT was sent: key pressed again");
    // The hold is spent: a second release says so.
    expect((await rejection(hold.release())).code).toBe(Code.FailedPrecondition);
  });

  it("an already aborted signal: release() rejects at once and the hold can still be released", async () => {
    const ptt = open(`${server.url.replace("http", "ws")}/v1/bridge`);
    const hold = ptt.hold();
    await hold.text("one. two.");
    const err = await rejection(hold.release({ signal: AbortSignal.abort() }));
    expect(err.code).toBe(Code.Canceled);
    const reply = await hold.release();
    for await (const _ of reply) {
      // drain
    }
    expect((await reply.done).endMessage).toBe("RESPONSE_COMPLETED");
  });

  it("aborting the signal after the COMMIT cancels the running reply", async () => {
    const ptt = open(`${server.url.replace("http", "ws")}/v1/bridge`);
    const hold = ptt.hold();
    await hold.text(Array.from({ length: 50 }, (_, i) => `Sentence ${i}.`).join(" "));
    const controller = new AbortController();
    const reply = await hold.release({ signal: controller.signal });
    const texts: string[] = [];
    const read = async () => {
      for await (const part of reply) {
        if (part.kind === "text") texts.push(part.text);
        if (texts.length === 1) controller.abort();
      }
    };
    // Iterating a cancelled reply throws its error, as `done` reports it.
    expect((await rejection(read())).code).toBe(Code.Canceled);
    const { error, endMessage } = await reply.done;
    expect(error?.code).toBe(Code.Canceled);
    expect(endMessage).toBeUndefined();
    expect(texts.length).toBeLessThan(50);
  });

  it("Node 20's own WebSocket (--experimental-websocket, as Node 22 has it) needs no option", async () => {
    const script = [
      `import { connect } from "./src/bridge/client/index.ts";`,
      `if (typeof WebSocket !== "function") throw new Error("no global WebSocket");`,
      `const ptt = connect(process.argv.at(-1), { hardwareId: "global-ws-1" });`,
      `const hold = ptt.hold();`,
      `hold.text("over the global WebSocket.");`,
      `const reply = await hold.release();`,
      `let text = "";`,
      `for await (const p of reply) if (p.kind === "text") text += p.text;`,
      `const { endMessage } = await reply.done;`,
      `console.log(JSON.stringify({ text, endMessage }));`,
      `ptt.close();`,
    ].join("\n");
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        "--no-warnings",
        "--experimental-websocket",
        "--import",
        "tsx",
        "--input-type=module",
        "--eval",
        script,
        `${server.url.replace("http", "ws")}/v1/bridge`,
      ],
      { cwd: ROOT, timeout: 60_000 },
    );
    expect(JSON.parse(stdout.trim())).toEqual({
      text: "over the global WebSocket.",
      endMessage: "RESPONSE_COMPLETED",
    });
    // A fresh Node process compiling the client through tsx: seconds on a loaded machine.
  }, 60_000);
});
