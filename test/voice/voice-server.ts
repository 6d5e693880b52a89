import { createGrpcTransport } from "@connectrpc/connect-node";
import { configFromEnv } from "../../src/core/env-config.js";
import type { Logger } from "../../src/core/ports.js";
import type { PttCoreOptions } from "../../src/core/ptt-core.js";
import { type NodeServer, startNodeServer } from "../../src/runtimes/node/server.js";
import { clientFor, type StreamingClient } from "../contract/calls.js";
import { TEST_LIMITS } from "../contract/target.js";
import { type FakeOpenAi, startFakeOpenAi } from "../support/fake-openai.js";

export interface VoiceServer {
  fake: FakeOpenAi;
  server: NodeServer;
  client: StreamingClient;
  logs: { level: string; msg: string; fields?: Record<string, unknown> }[];
  close(): Promise<void>;
}

/** A Node server with PTT_WORKFLOW=openai against a fake upstream, and a gRPC client. */
export async function startVoiceServer(
  env: Record<string, string> = {},
  extra: PttCoreOptions = {},
): Promise<VoiceServer> {
  const fake = await startFakeOpenAi();
  const logs: VoiceServer["logs"] = [];
  const log = (level: string) => (msg: string, fields?: Record<string, unknown>) =>
    void logs.push({ level, msg, fields });
  const logger: Logger = {
    debug: log("debug"),
    info: log("info"),
    warn: log("warn"),
    error: log("error"),
  };
  const config = configFromEnv({
    PTT_WORKFLOW: "openai",
    OPENAI_BASE_URL: fake.baseUrl,
    OPENAI_API_KEY: "sk-test-secret-key",
    PTT_LLM_MODEL: "gpt-4o-mini",
    ...env,
  });
  const server = await startNodeServer({
    port: 0,
    config: { ...config.core, limits: TEST_LIMITS, logger, ...extra },
    graceMs: 0,
  });
  const client = clientFor({
    name: "node/grpc",
    transport: createGrpcTransport({ baseUrl: server.url }),
    limits: TEST_LIMITS,
    echoDelayMs: 0,
  });
  return {
    fake,
    server,
    client,
    logs,
    close: async () => {
      await server.close(0);
      await fake.close();
    },
  };
}

/** Waits until `check` holds (event-based tests on a shared machine: no tight timing). */
export async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
