import { existsSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ReplyPart, Workflow } from "../../src/core/ports.js";
import type { CommittedTurn } from "../../src/core/session.js";
import { type NodeServer, startNodeServer } from "../../src/runtimes/node/server.js";

// The demo page (src/bridge/demo) in Debian's real headless Chromium against the Node server:
// fake microphone → MediaRecorder chunks and typed text over the bridge; the reply echoes the
// text and adds PCM audio in both dtypes (played through Web Audio).
const CHROMIUM = "/usr/bin/chromium";
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--use-fake-ui-for-media-stream",
  "--use-fake-device-for-media-stream",
];
const TIMEOUT_MS = 60_000;
const HOLD_MS = 1_000;
/** A committed text containing this keeps its reply running until it is interrupted. */
const UNTIL_INTERRUPTED = "until interrupted";

/** 0.2 s of a 440 Hz tone as little-endian int16 or float32 PCM. */
function tone(dtype: "int16" | "float32", sampleRate: number, channels: number): ReplyPart {
  const frames = sampleRate / 5;
  const width = dtype === "int16" ? 2 : 4;
  const view = new DataView(new ArrayBuffer(frames * channels * width));
  for (let i = 0; i < frames * channels; i++) {
    const v = 0.2 * Math.sin((2 * Math.PI * 440 * Math.floor(i / channels)) / sampleRate);
    if (dtype === "int16") view.setInt16(i * 2, Math.round(v * 32767), true);
    else view.setFloat32(i * 4, v, true);
  }
  return { kind: "audio", data: new Uint8Array(view.buffer), dtype, sampleRate, channels };
}

const turns: CommittedTurn[] = [];
const workflow: Workflow = async function* (turn, signal) {
  turns.push(turn);
  yield { kind: "text", text: turn.text };
  yield tone("int16", 16_000, 1);
  yield tone("float32", 24_000, 2);
  if (turn.text.includes(UNTIL_INTERRUPTED)) {
    await new Promise((_, reject) => {
      signal.addEventListener("abort", () => reject(signal.reason), { once: true });
    });
  }
};

const missing = !existsSync(CHROMIUM);
if (missing && !process.env.CI) {
  console.warn(
    `skipping test/e2e/chromium.test.ts: ${CHROMIUM} not found (apt-get install chromium)`,
  );
}

interface Acks {
  sent: number;
  acked: number;
  failed: number;
  rows: number;
  ackedRows: number;
  audioRows: number;
}

describe.skipIf(missing && !process.env.CI)("demo page in headless Chromium", () => {
  let server: NodeServer | undefined;
  let browser: Browser | undefined;
  let page: Page;
  let shots: string;
  const problems: string[] = [];

  beforeAll(async () => {
    if (missing) {
      throw new Error(`${CHROMIUM} is missing: CI must install Debian's chromium (see .ci/run)`);
    }
    shots = await mkdtemp(path.join(tmpdir(), "ptt-edge-e2e-"));
    console.info(`chromium e2e screenshots: ${shots}`);
    server = await startNodeServer({ port: 0, graceMs: 0, config: { workflow } });
    // Playwright gives every launch a fresh temporary user-data-dir and deletes it on close.
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
    const context = await browser.newContext({ viewport: { width: 900, height: 1000 } });
    await context.grantPermissions(["microphone"], { origin: server.url });
    page = await context.newPage();
    page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
    page.on("console", (msg) => {
      if (msg.type() === "error") problems.push(`console error: ${msg.text()}`);
    });
  }, TIMEOUT_MS);

  afterAll(async () => {
    await browser?.close();
    await server?.close(0);
  }, TIMEOUT_MS);

  it(
    "serves the page with a CSP that still lets it connect",
    async () => {
      const res = await page.goto(`${server?.url}/`);
      expect(res?.status()).toBe(200);
      const headers = res?.headers() ?? {};
      expect(headers["content-type"]).toBe("text/html; charset=utf-8");
      expect(headers["content-security-policy"]).toContain("connect-src 'self'");
      await page
        .waitForFunction(() => document.querySelector("#state")?.textContent === "open", null, {
          timeout: 10_000,
        })
        .catch((err: unknown) => {
          throw new Error(`the page never connected; page problems: ${problems.join("; ")}`, {
            cause: err,
          });
        });
      const device = await page.locator("#hardware").textContent();
      expect(device).toMatch(/^web-[0-9a-f]{16}$/);
      await page.reload();
      await page.waitForFunction(() => document.querySelector("#state")?.textContent === "open");
      expect(await page.locator("#hardware").textContent(), "kept in localStorage").toBe(device);
      await page.screenshot({ path: path.join(shots, "1-open.png"), fullPage: true });
    },
    TIMEOUT_MS,
  );

  it(
    "holding the button sends microphone chunks and typed text, and shows the echoed reply",
    async () => {
      const said = "Hello from Chromium. This is the push-to-talk demo!";
      await page.fill("#text", said);
      const talk = page.locator("#talk");
      const box = await talk.boundingBox();
      if (!box) throw new Error("#talk is not visible");
      await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
      await page.mouse.down();
      await page.waitForTimeout(HOLD_MS);
      expect(await talk.getAttribute("aria-pressed")).toBe("true");
      await page.screenshot({ path: path.join(shots, "2-holding.png"), fullPage: true });
      await page.mouse.up();

      await waitForReply(page, said);
      expect(await talk.getAttribute("aria-pressed")).toBe("false");
      const acks = await readAcks(page);
      expect(acks.audioRows, "MediaRecorder chunks from the fake microphone").toBeGreaterThan(0);
      expect(acks.sent).toBe(acks.rows);
      expect(acks.acked).toBe(acks.sent);
      expect(acks.ackedRows).toBe(acks.sent);
      expect(acks.failed).toBe(0);
      await expectLatency(page);
      // Both PCM parts went to Web Audio (0.2 s each).
      expect(await page.locator("#reply").getAttribute("data-audio-parts")).toBe("2");
      // The meta line speaks to a person: no header or field names.
      expect(await page.locator("#meta").textContent()).toMatch(
        /^\(\d+ ms of it in the server · 0\.40 s of audio in 2 parts · complete · turn [0-9a-f]{8}\)$/,
      );
      // What the page says it sent is what the server committed.
      const turn = turns.at(-1);
      expect(turn?.text).toBe(said);
      expect(turn?.audio.length).toBe(acks.audioRows);
      expect(new Set(turn?.audio.map((a) => a.encoding))).toEqual(new Set(["webm_opus"]));
      await page.screenshot({ path: path.join(shots, "3-reply.png"), fullPage: true });
    },
    TIMEOUT_MS,
  );

  it(
    "holding the space bar does the same",
    async () => {
      const said = "Sent while holding the space bar.";
      await page.fill("#text", said);
      await page.locator("#talk").focus();
      await page.keyboard.down("Space");
      await page.waitForTimeout(HOLD_MS / 2);
      expect(await page.locator("#talk").getAttribute("aria-pressed")).toBe("true");
      // A space typed into the text field during the hold is typing, not the release.
      await page.locator("#text").focus();
      await page.keyboard.type(" Yes");
      expect(await page.locator("#talk").getAttribute("aria-pressed")).toBe("true");
      await page.locator("#talk").focus();
      await page.keyboard.up("Space");

      await waitForReply(page, `${said} Yes`);
      const acks = await readAcks(page);
      expect(acks.sent).toBeGreaterThan(0);
      expect(acks.acked).toBe(acks.sent);
      await expectLatency(page);
      await page.screenshot({ path: path.join(shots, "4-space.png"), fullPage: true });
    },
    TIMEOUT_MS,
  );

  it(
    "the interrupt button stops a running reply",
    async () => {
      const said = `Keep replying ${UNTIL_INTERRUPTED}.`;
      await page.fill("#text", said);
      await page.locator("#talk").focus();
      await page.keyboard.down("Space");
      await page.waitForTimeout(300);
      await page.keyboard.up("Space");
      await page.waitForFunction((want) => {
        const reply = document.querySelector<HTMLElement>("#reply");
        return reply?.dataset.status === "streaming" && reply.textContent === want;
      }, said);
      await page.click("#interrupt");
      await page.waitForFunction(
        () => document.querySelector<HTMLElement>("#reply")?.dataset.status === "interrupted",
      );
      await page.waitForFunction(
        () => document.querySelector("#note")?.textContent === "Interrupted 1 running reply.",
      );
      expect(await page.locator("#meta").textContent()).toContain("interrupted");
      await page.screenshot({ path: path.join(shots, "5-interrupted.png"), fullPage: true });
    },
    TIMEOUT_MS,
  );

  it(
    "works as text only without a microphone or a speech API",
    async () => {
      const context = page.context();
      const bare = await context.newPage();
      bare.on("pageerror", (err) => problems.push(`page error (bare): ${err.message}`));
      await bare.addInitScript(() => {
        const w = window as unknown as Record<string, unknown>;
        delete w.SpeechRecognition;
        delete w.webkitSpeechRecognition;
        navigator.mediaDevices.getUserMedia = () =>
          Promise.reject(new DOMException("Requested device not found", "NotFoundError"));
      });
      try {
        await bare.goto(`${server?.url}/`);
        await bare.waitForFunction(() => document.querySelector("#state")?.textContent === "open");
        expect(await bare.locator("#use-speech").isDisabled()).toBe(true);
        const said = "No microphone here.";
        await bare.fill("#text", said);
        await bare.locator("#talk").hover();
        await bare.mouse.down();
        await bare.waitForTimeout(300);
        await bare.mouse.up();
        await waitForReply(bare, said);
        const acks = await readAcks(bare);
        expect(acks).toMatchObject({ sent: 1, acked: 1, audioRows: 0 });
        expect(await bare.locator("#use-mic").isDisabled()).toBe(true);
        expect(await bare.locator("#note").textContent()).toContain("Microphone unavailable");
        await bare.screenshot({ path: path.join(shots, "6-no-microphone.png"), fullPage: true });
      } finally {
        await bare.close();
      }
    },
    TIMEOUT_MS,
  );

  it("logged no page errors or console errors (CSP violations included)", () => {
    expect(problems).toEqual([]);
  });
});

async function waitForReply(page: Page, text: string): Promise<void> {
  await page.waitForFunction(
    (want) => {
      const reply = document.querySelector<HTMLElement>("#reply");
      return reply?.dataset.status === "done" && reply.textContent === want;
    },
    text,
    { timeout: 20_000 },
  );
}

function readAcks(page: Page): Promise<Acks> {
  return page.evaluate(() => {
    const acks = document.querySelector<HTMLElement>("#acks");
    const rows = (sel: string) => document.querySelectorAll(`#acks li${sel}`).length;
    return {
      sent: Number(acks?.dataset.sent),
      acked: Number(acks?.dataset.acked),
      failed: Number(acks?.dataset.failed),
      rows: rows(""),
      ackedRows: rows('[data-state="acked"]'),
      audioRows: rows('[data-kind="audio"]'),
    };
  });
}

async function expectLatency(page: Page): Promise<void> {
  const latency = page.locator("#latency");
  expect(await latency.textContent()).toMatch(/^\d+ ms$/);
  expect(await latency.getAttribute("data-ms")).toMatch(/^\d+(\.\d+)?$/);
}
