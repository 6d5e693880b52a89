import { afterEach, describe, expect, it } from "vitest";
import { type NodeServer, startNodeServer } from "../../src/runtimes/node/server.js";
import { newDevice, newSession } from "../contract/calls.js";
import { collectBody, commitBody, lastContent, RawBridge, sleep, textOf } from "./raw-bridge.js";

// Graceful shutdown of bridge sockets on Node, over real sockets: once close() starts, a
// socket takes no new call (CallEnd unavailable) while its running replies finish within
// the grace period; it closes (1001) after its last CallEnd.

const ECHO_DELAY_MS = 20;
/** 40 sentences: ~0.8 s of reply at ECHO_DELAY_MS. */
const PROMPT = "a. ".repeat(40);

let servers: NodeServer[] = [];
afterEach(async () => {
  await Promise.all(servers.map((s) => s.close(0)));
  servers = [];
});

async function start(graceMs: number): Promise<{ server: NodeServer; raw: RawBridge }> {
  const server = await startNodeServer({
    port: 0,
    graceMs,
    config: { echoDelayMs: ECHO_DELAY_MS },
  });
  servers.push(server);
  const raw = await RawBridge.open(`${server.url.replace(/^http/, "ws")}/v1/bridge`);
  return { server, raw };
}

/** COLLECTs PROMPT and COMMITs it as call `id`; resolves at its first reply frame. */
async function replyUnderWay(raw: RawBridge, id: number): Promise<void> {
  const hw = newDevice("bye");
  const sid = newSession();
  expect((await raw.run(id - 1, collectBody(hw, sid, 1, PROMPT))).end.code).toBe("");
  raw.send(id, commitBody(hw, sid));
  await raw.until(() => raw.call(id).frames.length > 0, "the first reply frame");
}

describe("node: bridge sockets on shutdown", () => {
  it("a reply running when close() starts completes (end_message) within the grace period; a new call gets unavailable", async () => {
    const { server, raw } = await start(5000);
    await replyUnderWay(raw, 2);
    const t0 = performance.now();
    const closing = server.close();
    await sleep(50);
    expect(raw.isOpen).toBe(true);
    const refused = await raw.run(3, collectBody(newDevice(), newSession(), 1, "too late"));
    expect(refused.end.code).toBe("unavailable");
    expect(refused.end.message).toContain("shutting down");
    expect(refused.log.frames).toHaveLength(0);

    const end = await raw.end(2, 1, 5000);
    expect(end.code).toBe("");
    const reply = raw.call(2);
    expect(textOf(reply)).toBe(PROMPT);
    expect(lastContent(reply)).toEqual({ case: "endMessage", value: "RESPONSE_COMPLETED" });
    const closed = await raw.closed;
    expect(closed.code).toBe(1001);
    await closing;
    const ms = performance.now() - t0;
    console.info(
      `node: bridge reply finished and socket closed ${Math.round(ms)} ms after close()`,
    );
    expect(ms).toBeLessThan(4000);
    expect(server.core.replies.inFlight).toBe(0);
  }, 15_000);

  it("a reply longer than the grace period ends canceled, then the socket closes (1001)", async () => {
    const { server, raw } = await start(200);
    await replyUnderWay(raw, 2);
    const closing = server.close();
    const end = await raw.end(2, 1, 3000);
    expect(end.code).toBe("canceled");
    expect(lastContent(raw.call(2))?.case).not.toBe("endMessage");
    expect((await raw.closed).code).toBe(1001);
    await closing;
    expect(server.core.replies.inFlight).toBe(0);
  }, 15_000);

  it("an idle bridge socket closes (1001) at once", async () => {
    const { server, raw } = await start(5000);
    const t0 = performance.now();
    await server.close();
    expect((await raw.closed).code).toBe(1001);
    expect(performance.now() - t0).toBeLessThan(1000);
  });
});
