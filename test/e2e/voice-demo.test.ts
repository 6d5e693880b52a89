import { existsSync } from "node:fs";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { configFromEnv } from "../../src/core/env-config.js";
import { type NodeServer, startNodeServer } from "../../src/runtimes/node/server.js";
import { type FakeOpenAi, startFakeOpenAi } from "../support/fake-openai.js";

// The demo page with PTT_WORKFLOW=openai: a microphone-only hold (MediaRecorder webm/opus from
// Chromium's fake device) is transcribed, the page shows what was heard, and plays the reply's
// speech as it arrives.
const CHROMIUM = "/usr/bin/chromium";
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--no-first-run",
  "--use-fake-ui-for-media-stream",
  "--use-fake-device-for-media-stream",
];
const TIMEOUT_MS = 60_000;

describe.skipIf(!existsSync(CHROMIUM) && !process.env.CI)("voice demo in headless Chromium", () => {
  let fake: FakeOpenAi;
  let server: NodeServer;
  let browser: Browser | undefined;
  let page: Page;

  beforeAll(async () => {
    fake = await startFakeOpenAi();
    fake.transcription = { text: "what is the weather in Paris" };
    fake.chat = { tokens: ["It is sunny in Paris."] };
    const config = configFromEnv({
      PTT_WORKFLOW: "openai",
      OPENAI_BASE_URL: fake.baseUrl,
      PTT_LLM_MODEL: "m",
      PTT_TTS_MODEL: "t",
      PTT_STT_MODEL: "w",
    });
    server = await startNodeServer({ port: 0, graceMs: 0, config: config.core });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
    const context = await browser.newContext();
    await context.grantPermissions(["microphone"], { origin: server.url });
    page = await context.newPage();
  }, TIMEOUT_MS);

  afterAll(async () => {
    await browser?.close();
    await server?.close(0);
    await fake?.close();
  }, TIMEOUT_MS);

  it(
    "transcribes a microphone hold, shows what was heard and plays the spoken reply",
    async () => {
      await page.goto(`${server.url}/`);
      await page.waitForFunction(() => document.querySelector("#state")?.textContent === "open");
      await page.locator("#use-speech").uncheck();
      await page.fill("#text", "");
      const talk = page.locator("#talk");
      await talk.focus();
      await page.keyboard.down("Space");
      await page.waitForTimeout(1000);
      await page.keyboard.up("Space");
      await page.waitForFunction(
        () => document.querySelector<HTMLElement>("#reply")?.dataset.status === "done",
        null,
        { timeout: 20_000 },
      );
      expect(await page.locator("#reply").textContent()).toBe("It is sunny in Paris.");
      expect(await page.locator("#heard").isVisible()).toBe(true);
      expect(await page.locator("#transcript").textContent()).toBe("what is the weather in Paris");
      expect(Number(await page.locator("#reply").getAttribute("data-audio-parts"))).toBeGreaterThan(
        0,
      );
      const stt = fake.to("/v1/audio/transcriptions").at(-1);
      expect(stt?.form?.file?.type).toBe("audio/webm");
      // A webm file starts with the EBML header of the first MediaRecorder chunk.
      expect([...(stt?.form?.file?.data.subarray(0, 4) ?? [])]).toEqual([0x1a, 0x45, 0xdf, 0xa3]);
    },
    TIMEOUT_MS,
  );
});
