import { existsSync } from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { build } from "esbuild";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { ReplyPart, Workflow } from "../../src/core/ports.js";
import type { CommittedTurn, SessionKey } from "../../src/core/session.js";
import { type NodeServer, startNodeServer } from "../../src/runtimes/node/server.js";
import { newDevice } from "../contract/calls.js";
import { partsText } from "../support/reply-parts.js";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.js";

// Issue 14's browser case: the client library (src/bridge/client, bundled by esbuild) in Debian's
// real headless Chromium, its bridge socket through the TCP proxy that cuts connections (both
// halves destroyed, bytes in flight lost), mid-reply. The workflow yields each part only when the
// test allows it, so every cut lands at a known frame: the page's `for await` loop reports each
// part it gets, the test waits for the k-th, then cuts. No sleeps.
const ROOT = path.resolve(import.meta.dirname, "../..");
const CHROMIUM = "/usr/bin/chromium";
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"];
const TIMEOUT_MS = 30_000;

/** The reply: 24 parts, text with an audio part every sixth. */
const PARTS: ReplyPart[] = Array.from({ length: 24 }, (_, i) =>
  i % 6 === 5
    ? {
        kind: "audio",
        data: Uint8Array.from({ length: 32 }, (_, b) => (i * 7 + b) & 0xff),
        dtype: "int16",
        sampleRate: 16_000,
        channels: 1,
      }
    : { kind: "text", text: `Sentence ${i + 1} of the reply. ` },
);
/** A part as the page reports it (Uint8Array does not cross page.evaluate). */
type SeenPart = { kind: "text"; text: string } | { kind: "audio"; bytes: number[]; dtype: string };
const EXPECTED: SeenPart[] = PARTS.map((p) =>
  p.kind === "text"
    ? { kind: "text", text: p.text }
    : { kind: "audio", bytes: [...(p as { data: Uint8Array }).data], dtype: "int16" },
);
const EXPECTED_TEXT = partsText(PARTS);

/**
 * One device's reply script: part i is yielded once `allowed` > i, and the workflow returns
 * (the reply ends) once `allowed` > PARTS.length.
 */
class Script {
  readonly runs: CommittedTurn[] = [];
  private allowed = 0;
  private wake: (() => void)[] = [];

  allow(n: number): void {
    this.allowed = n;
    for (const w of this.wake.splice(0)) w();
  }

  async until(n: number, signal: AbortSignal): Promise<void> {
    while (this.allowed < n) {
      signal.throwIfAborted();
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => reject(signal.reason);
        signal.addEventListener("abort", onAbort, { once: true });
        this.wake.push(() => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        });
      });
    }
  }
}

const scripts = new Map<string, Script>();
const workflow: Workflow = async function* (turn, signal) {
  const script = scripts.get(turn.hardwareId);
  if (!script) throw new Error(`no script for ${turn.hardwareId}`);
  script.runs.push(turn);
  for (const [i, part] of PARTS.entries()) {
    await script.until(i + 1, signal);
    yield part;
  }
  await script.until(PARTS.length + 1, signal);
};

interface PageResult {
  parts: SeenPart[];
  error: string | null;
  endMessage: string | null;
  turnId: string | null;
  states: string[];
}

/** The page's side: starts a hold and its reply, and reports each part to the test. */
async function startReply(args: {
  url: string;
  hardwareId: string;
  livenessMs?: number;
  livenessTimeoutMs?: number;
}): Promise<string> {
  type Part =
    | { kind: "text"; text: string }
    | { kind: "audio"; data: Uint8Array; dtype: string }
    | { kind: "action" };
  interface ClientReply extends AsyncIterable<Part> {
    done: Promise<{
      error?: { message: string };
      endMessage?: string;
      metadata: Headers;
    }>;
  }
  const w = window as unknown as {
    PttClient: {
      connect(
        url: string,
        options: {
          hardwareId: string;
          minBackoffMs: number;
          maxBackoffMs: number;
          livenessMs?: number | undefined;
          livenessTimeoutMs?: number | undefined;
          onState(s: string): void;
        },
      ): {
        channel: { ready(): Promise<void> };
        hold(o: { mode: string }): {
          sessionId: string;
          text(t: string): Promise<unknown>;
          release(): Promise<ClientReply>;
        };
        close(): void;
      };
    };
    reportPart(n: number): void;
    reportEnd(result: unknown): void;
    result: Promise<unknown>;
    ptt: { close(): void };
  };
  const states: string[] = [];
  const ptt = w.PttClient.connect(args.url, {
    hardwareId: args.hardwareId,
    minBackoffMs: 20,
    maxBackoffMs: 200,
    livenessMs: args.livenessMs,
    livenessTimeoutMs: args.livenessTimeoutMs,
    onState: (s) => states.push(s),
  });
  w.ptt = ptt;
  await ptt.channel.ready();
  const hold = ptt.hold({ mode: "delta" });
  await hold.text("tell me a long story");
  const reply = await hold.release();
  w.result = (async () => {
    const parts: unknown[] = [];
    let error: string | null = null;
    try {
      for await (const part of reply) {
        parts.push(
          part.kind === "audio"
            ? { kind: "audio", bytes: [...part.data], dtype: part.dtype }
            : part.kind === "text"
              ? { kind: "text", text: part.text }
              : part,
        );
        w.reportPart(parts.length);
      }
    } catch (err) {
      error = String(err);
    }
    const status = await reply.done;
    ptt.close();
    const result = {
      parts,
      error: error ?? status.error?.message ?? null,
      endMessage: status.endMessage ?? null,
      turnId: status.metadata.get("ptt-turn-id"),
      states,
    };
    w.reportEnd(result);
    return result;
  })();
  return hold.sessionId;
}

const missing = !existsSync(CHROMIUM);
if (missing && !process.env.CI) {
  console.warn(`skipping ${path.basename(import.meta.filename)}: ${CHROMIUM} not found`);
}

describe.skipIf(missing && !process.env.CI)("browser client resumes a reply in Chromium", () => {
  let server: NodeServer;
  let proxy: TcpProxy;
  let site: http.Server;
  let browser: Browser;
  let page: Page;
  const problems: string[] = [];
  /** Parts the page's loop has reported, and who waits for a count. */
  let reported = 0;
  let partWaiters: { n: number; resolve: () => void; reject: (err: Error) => void }[] = [];
  /** The page's result, once its reply ended. */
  let ended: PageResult | undefined;

  beforeAll(async () => {
    if (missing) {
      throw new Error(`${CHROMIUM} is missing: CI must install Debian's chromium (see .ci/run)`);
    }
    const bundle = await build({
      absWorkingDir: ROOT,
      entryPoints: [path.join(ROOT, "src/bridge/client/index.ts")],
      bundle: true,
      format: "iife",
      globalName: "PttClient",
      platform: "browser",
      target: "es2022",
      write: false,
      logLevel: "silent",
    });
    const client = bundle.outputFiles[0]?.text ?? "";
    // The app's page on its own origin (listed in allowed_origins), its script the client bundle.
    site = http.createServer((req, res) => {
      if (req.url === "/client.js") {
        res.writeHead(200, { "content-type": "text/javascript" }).end(client);
      } else {
        res
          .writeHead(200, { "content-type": "text/html" })
          .end('<!doctype html><title>app</title><script src="/client.js"></script>');
      }
    });
    await new Promise<void>((r) => site.listen(0, "127.0.0.1", r));
    const origin = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
    server = await startNodeServer({
      port: 0,
      graceMs: 0,
      config: { workflow, allowedOrigins: [origin] },
    });
    proxy = await startTcpProxy({ host: "127.0.0.1", port: server.port });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
    page = await browser.newPage();
    page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
    await page.exposeFunction("reportPart", (n: number) => {
      reported = n;
      partWaiters = partWaiters.filter((w) => {
        if (w.n > n) return true;
        w.resolve();
        return false;
      });
    });
    await page.exposeFunction("reportEnd", (result: PageResult) => {
      ended = result;
      const early = new Error(`the page's reply ended early: ${JSON.stringify(result.error)}`);
      for (const w of partWaiters.splice(0)) w.reject(early);
    });
    await page.goto(`${origin}/`);
    expect(await page.evaluate(() => typeof (window as { PttClient?: unknown }).PttClient)).toBe(
      "object",
    );
  }, TIMEOUT_MS);

  afterEach(async () => {
    // A failed test leaves no reply waiting for its next part and no socket to the next one
    // (CI retries a failed test once).
    proxy.refuse = false;
    for (const script of scripts.values()) script.allow(Number.POSITIVE_INFINITY);
    await page.evaluate(() => (window as unknown as { ptt?: { close(): void } }).ptt?.close());
    proxy.dropAll();
    expect(problems).toEqual([]);
  });

  afterAll(async () => {
    await browser?.close();
    await proxy?.close();
    await server?.close(0);
    await new Promise((r) => site?.close(r));
  }, TIMEOUT_MS);

  /** Resolves once the page's loop has got `n` parts. */
  function pagePart(n: number): Promise<void> {
    if (reported >= n) return Promise.resolve();
    if (ended) return Promise.reject(new Error(`the page's reply ended at ${reported} parts`));
    return new Promise((resolve, reject) => partWaiters.push({ n, resolve, reject }));
  }

  /** Polls server-side state; fails at once, saying how, if the page's reply ended meanwhile. */
  async function until(pred: () => boolean | Promise<boolean>, what: string, ms = 10_000) {
    const deadline = performance.now() + ms;
    while (!(await pred())) {
      if (ended) {
        throw new Error(`the page's reply ended before ${what}: ${JSON.stringify(ended.error)}`);
      }
      if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms: ${what}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** The page's result, once its reply ends. */
  async function pageResult(): Promise<PageResult> {
    return (await page.evaluate(
      () => (window as unknown as { result: Promise<unknown> }).result,
    )) as PageResult;
  }

  /** A device with its script; the page connects through the proxy, holds, and releases. */
  async function begin(
    liveness: { livenessMs?: number; livenessTimeoutMs?: number } = {},
  ): Promise<{ script: Script; key: SessionKey }> {
    const hardwareId = newDevice("chrome-resume");
    const script = new Script();
    scripts.set(hardwareId, script);
    reported = 0;
    ended = undefined;
    const sessionId = await page.evaluate(startReply, {
      url: proxy.wsUrl("/v1/bridge"),
      hardwareId,
      ...liveness,
    });
    // Only the page's bridge socket goes through the proxy.
    expect(proxy.active).toBe(1);
    return { script, key: { hardwareId, sessionId } };
  }

  const resumed = () => server.core.metrics.resumes.get("ok") ?? 0;
  const frames = async (key: SessionKey) => (await server.core.journal.head(key))?.frames ?? 0;

  it.each(["dropAll", "resetAll"] as const)(
    "cut mid-reply (%s): frames lost in flight, made while disconnected, and live after the resume, each once",
    async (cut) => {
      const runsBefore = server.core.metrics.workflowRuns;
      const resumedBefore = resumed();
      const acceptedBefore = proxy.accepted;
      const { script, key } = await begin();
      const K = 5;
      script.allow(K);
      await pagePart(K);

      // Frames K..K+3 leave the server and die in the proxy with the connection.
      expect(proxy.stallReplies()).toBe(1);
      script.allow(K + 4);
      await until(async () => (await frames(key)) === K + 4, "frames K..K+3 sent into the stall");
      proxy.refuse = true;
      expect(proxy[cut]()).toBe(1);
      const acceptedAtDrop = proxy.accepted;

      // While the page cannot connect, the reply goes on into the journal.
      script.allow(16);
      await until(async () => (await frames(key)) === 16, "frames up to 16 journaled");
      await until(() => proxy.accepted > acceptedAtDrop, "a refused reconnect attempt");
      expect(reported).toBe(K);
      proxy.refuse = false;

      // The page resumes from K: 16 - K frames from the journal, then the rest live.
      await until(() => resumed() > resumedBefore, "the page's resume");
      await pagePart(16);
      script.allow(PARTS.length + 1);
      const result = await pageResult();

      expect(result.error).toBeNull();
      expect(result.parts).toEqual(EXPECTED);
      expect(partsText(result.parts), "the text of the uninterrupted reply").toBe(EXPECTED_TEXT);
      expect(result.endMessage).toBe("RESPONSE_COMPLETED");
      expect(script.runs).toHaveLength(1);
      expect(server.core.metrics.workflowRuns - runsBefore).toBe(1);
      expect(result.turnId).toBe(script.runs[0]?.turnId);
      expect(resumed() - resumedBefore).toBe(1);
      expect(result.states).toContain("reconnecting");
      // The first socket, at least one refused attempt, and the one that resumed.
      expect(proxy.accepted - acceptedBefore).toBeGreaterThanOrEqual(3);
    },
    TIMEOUT_MS,
  );

  it(
    "cut after the reply ended but before the page saw its end: the resume replays only the end",
    async () => {
      const runsBefore = server.core.metrics.workflowRuns;
      const resumedBefore = resumed();
      const { script, key } = await begin();
      const N = PARTS.length;
      script.allow(N);
      await pagePart(N);

      // The end_message and the CallEnd leave the server and never reach the page.
      expect(proxy.stallReplies()).toBe(1);
      const acceptedAtDrop = proxy.accepted;
      script.allow(N + 1);
      await until(
        async () => (await server.core.journal.head(key))?.end !== undefined,
        "the reply's end journaled",
      );
      expect(proxy.dropAll()).toBe(1);

      const result = await pageResult();
      expect(result.error).toBeNull();
      expect(result.parts).toEqual(EXPECTED);
      expect(result.endMessage).toBe("RESPONSE_COMPLETED");
      expect(result.turnId).toBe(script.runs[0]?.turnId);
      expect(script.runs).toHaveLength(1);
      expect(server.core.metrics.workflowRuns - runsBefore).toBe(1);
      expect(resumed() - resumedBefore).toBe(1);
      expect(proxy.accepted).toBeGreaterThan(acceptedAtDrop);
      expect(await frames(key)).toBe(N);
    },
    TIMEOUT_MS,
  );
  // docs/protocol.md §6, liveness: the connection stays open and carries nothing either way (a
  // laptop lid, a phone leaving Wi-Fi). Chromium fires no close event and its page sees no
  // WebSocket pings: only the Ping the client gets no answer to tells it.
  it(
    "the connection goes silent mid-reply (no FIN, no RST): the page notices by itself and resumes, each part once",
    async () => {
      const runsBefore = server.core.metrics.workflowRuns;
      const resumedBefore = resumed();
      const { script, key } = await begin({ livenessMs: 200, livenessTimeoutMs: 1000 });
      const K = 5;
      script.allow(K);
      await pagePart(K);
      const acceptedAtSilence = proxy.accepted;
      expect(proxy.blackhole()).toBe(1);
      // Frames made meanwhile vanish on the way; the journal has them.
      script.allow(K + 4);
      await until(async () => (await frames(key)) === K + 4, "frames K..K+3 sent into the silence");
      await until(() => resumed() > resumedBefore, "the page's resume", 20_000);
      await pagePart(K + 4);
      script.allow(PARTS.length + 1);
      const result = await pageResult();

      expect(result.error).toBeNull();
      expect(result.parts).toEqual(EXPECTED);
      expect(result.endMessage).toBe("RESPONSE_COMPLETED");
      expect(result.turnId).toBe(script.runs[0]?.turnId);
      expect(script.runs).toHaveLength(1);
      expect(server.core.metrics.workflowRuns - runsBefore).toBe(1);
      expect(resumed() - resumedBefore).toBe(1);
      expect(result.states).toContain("reconnecting");
      expect(proxy.accepted - acceptedAtSilence).toBe(1);
    },
    TIMEOUT_MS,
  );
});
