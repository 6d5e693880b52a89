import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe } from "vitest";
import { configFromEnv } from "../../src/core/env-config.js";
import { splitSentences } from "../../src/core/workflows/sentences.js";
import { type NodeServer, startNodeServer } from "../../src/runtimes/node/server.js";
import { type FakeOpenAi, startFakeOpenAi } from "../support/fake-openai.js";
import { SkewClock } from "../support/skew-clock.js";
import { contractSuite } from "./suite.js";
import { type Target, TEST_ECHO_DELAY_MS, TEST_LIMITS } from "./target.js";

// The contract with PTT_WORKFLOW=openai over gRPC: the loopback upstream answers each turn with
// the user's own words, a sentence per token and the echo's pause before each, so every case
// that reads a reply reads what it would read from the echo workflow (grouped in sentences).
describe("contract: node/grpc with PTT_WORKFLOW=openai", () => {
  const clock = new SkewClock();
  let fake: FakeOpenAi;
  let server: NodeServer;
  let target: Target;
  beforeAll(async () => {
    fake = await startFakeOpenAi();
    fake.chat = (req) => {
      const messages = req.json?.messages as { content: unknown }[];
      const last = messages.at(-1)?.content;
      const text = typeof last === "string" ? last : "";
      return { tokens: splitSentences(text), delayMs: TEST_ECHO_DELAY_MS };
    };
    const config = configFromEnv({
      PTT_WORKFLOW: "openai",
      OPENAI_BASE_URL: fake.baseUrl,
      PTT_LLM_MODEL: "echo",
      // An audio-only hold is transcribed (the fake answers "what is the weather").
      PTT_STT_MODEL: "whisper-1",
    });
    server = await startNodeServer({
      port: 0,
      config: { ...config.core, limits: TEST_LIMITS, clock },
      graceMs: 0,
    });
    target = {
      name: "node/grpc+openai",
      transport: createGrpcTransport({ baseUrl: server.url }),
      limits: TEST_LIMITS,
      echoDelayMs: TEST_ECHO_DELAY_MS,
    };
  });
  afterAll(async () => {
    await server.close(0);
    await fake.close();
  });
  contractSuite({ advanceClock: (ms) => clock.advance(ms), groupedSentences: true }, () => target);
});
