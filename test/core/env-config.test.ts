import { describe, expect, it } from "vitest";
import {
  CONNECTION_LIMIT_VARS,
  DEFAULT_CONNECTION_LIMITS,
} from "../../src/core/connection-limits.js";
import { configFromEnv, limitEnvName } from "../../src/core/env-config.js";
import { DEFAULT_LIMITS, type Limits } from "../../src/core/limits.js";

const LIMIT_VARS: Record<keyof Limits, string> = {
  maxChunkTextBytes: "PTT_MAX_CHUNK_TEXT_BYTES",
  maxSessionTextBytes: "PTT_MAX_SESSION_TEXT_BYTES",
  maxChunksPerSession: "PTT_MAX_CHUNKS_PER_SESSION",
  maxAudioBytesPerSession: "PTT_MAX_AUDIO_BYTES_PER_SESSION",
  maxScreenshotBytes: "PTT_MAX_SCREENSHOT_BYTES",
  maxOpenSessionsPerDevice: "PTT_MAX_OPEN_SESSIONS_PER_DEVICE",
  maxOpenSessionsPerInstance: "PTT_MAX_OPEN_SESSIONS_PER_INSTANCE",
  maxBufferedBytesPerInstance: "PTT_MAX_BUFFERED_BYTES_PER_INSTANCE",
  maxTombstonesPerDevice: "PTT_MAX_TOMBSTONES_PER_DEVICE",
  idleTtlMs: "PTT_IDLE_TTL_MS",
  maxHoldMs: "PTT_MAX_HOLD_MS",
  tombstoneTtlMs: "PTT_TOMBSTONE_TTL_MS",
  maxConcurrentReplies: "PTT_MAX_CONCURRENT_REPLIES",
  maxRepliesPerDevice: "PTT_MAX_REPLIES_PER_DEVICE",
  maxRepliesPerConnection: "PTT_MAX_REPLIES_PER_CONNECTION",
  replyStallMs: "PTT_REPLY_STALL_MS",
  maxRequestBytes: "PTT_MAX_REQUEST_BYTES",
  maxCollectsPerSecond: "PTT_MAX_COLLECTS_PER_SECOND",
  maxCommitsPerMinute: "PTT_MAX_COMMITS_PER_MINUTE",
  maxJournalBytes: "PTT_MAX_JOURNAL_BYTES",
};
const limitKeys = Object.keys(DEFAULT_LIMITS) as (keyof Limits)[];

const BAD_INTEGERS = ["0", "-1", "1.5", "abc", "", " ", "1e3", "0x10", "12abc", "9007199254740993"];

describe("configFromEnv", () => {
  it("has defaults for everything", () => {
    const config = configFromEnv({});
    expect(config).toMatchObject({
      port: 8080,
      host: "127.0.0.1",
      graceMs: 10_000,
      logLevel: "info",
      core: {
        limits: {},
        bargeIn: "press",
        endMessage: undefined,
        echoDelayMs: undefined,
        auth: undefined,
      },
    });
  });

  it("every limit has a PTT_<LIMIT> variable", () => {
    expect(limitKeys.sort()).toEqual((Object.keys(LIMIT_VARS) as (keyof Limits)[]).sort());
    for (const key of limitKeys) {
      expect(limitEnvName(key)).toBe(LIMIT_VARS[key]);
      const config = configFromEnv({ [LIMIT_VARS[key]]: "1234" });
      expect(config.core.limits).toEqual({ [key]: 1234 });
    }
  });

  it("reads all the limits at once", () => {
    const env = Object.fromEntries(limitKeys.map((k, i) => [LIMIT_VARS[k], String(i + 1)]));
    const limits = configFromEnv(env).core.limits ?? {};
    limitKeys.forEach((k, i) => {
      expect(limits[k]).toBe(i + 1);
    });
  });

  it.each(limitKeys)("a bad %s value throws naming the variable", (key) => {
    const name = LIMIT_VARS[key];
    for (const bad of BAD_INTEGERS) {
      expect(() => configFromEnv({ [name]: bad }), `${name}=${JSON.stringify(bad)}`).toThrow(
        new RegExp(`^${name}: `),
      );
    }
  });

  it("never echoes a long bad value whole", () => {
    const bad = "9".repeat(30) + "x".repeat(1000);
    // Read the message outside the try: an assertion failing inside it would be caught too.
    let message = "";
    try {
      configFromEnv({ PTT_IDLE_TTL_MS: bad });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain("PTT_IDLE_TTL_MS");
    expect(message.length).toBeLessThan(120);
  });

  it("server settings", () => {
    const config = configFromEnv({
      PORT: "0",
      HOST: "0.0.0.0",
      PTT_GRACE_MS: "0",
      PTT_LOG_LEVEL: "debug",
      PTT_BARGE_IN: "commit",
      PTT_END_MESSAGE: "DONE",
      PTT_ECHO_DELAY_MS: "0",
    });
    expect(config).toMatchObject({
      port: 0,
      host: "0.0.0.0",
      graceMs: 0,
      logLevel: "debug",
      core: { bargeIn: "commit", endMessage: "DONE", echoDelayMs: 0 },
    });
    expect(configFromEnv({ PTT_BARGE_IN: "off" }).core.bargeIn).toBe("off");
    expect(configFromEnv({ PTT_BARGE_IN: "", PTT_LOG_LEVEL: "", HOST: "" })).toMatchObject({
      host: "127.0.0.1",
      logLevel: "info",
      core: { bargeIn: "press" },
    });
  });

  it.each([
    ["PORT", "http"],
    ["PORT", "-1"],
    ["PTT_GRACE_MS", "soon"],
    ["PTT_ECHO_DELAY_MS", "1.5"],
    ["PTT_LOG_LEVEL", "verbose"],
    ["PTT_LOG_LEVEL", "INFO"],
    ["PTT_BARGE_IN", "never"],
    ["PTT_AUTH_TOKENS", "hw1"],
    ["PTT_AUTH_TOKENS", "hw1=tok1,"],
    ["PTT_AUTH_TOKENS", "=tok1"],
  ])("%s=%j throws naming the variable", (name, value) => {
    expect(() => configFromEnv({ [name]: value })).toThrow(new RegExp(`^${name}: `));
  });

  // Regression (was a bug): PORT has no upper bound, so PORT=70000 passes here and fails later in
  // listen() with an error that does not name the variable.
  it("PORT above 65535 throws naming the variable", () => {
    expect(() => configFromEnv({ PORT: "70000" })).toThrow(/^PORT: /);
  });

  it("PTT_AUTH_TOKENS maps bearer tokens to hardware ids", async () => {
    const auth = configFromEnv({ PTT_AUTH_TOKENS: "hw1=tok1, hw2 = tok2" }).core.auth;
    expect(typeof auth).toBe("function");
    const who = (token: string) => auth?.(new Headers({ authorization: `Bearer ${token}` }));
    expect(await who("tok1")).toBe("hw1");
    expect(await who("tok2")).toBe("hw2");
    expect(await who("tok3")).toBeNull();
    expect(await auth?.(new Headers())).toBeNull();
  });

  // Regression (was a bug): each pair is split on every "=", so a token containing "=" (base64
  // padding) is cut at its first "=": "hw1=abc==" registers the token "abc", not "abc==".
  it("a token may contain '=' (base64 padding)", async () => {
    const auth = configFromEnv({ PTT_AUTH_TOKENS: "hw1=c2VjcmV0==" }).core.auth;
    const who = (token: string) => auth?.(new Headers({ authorization: `Bearer ${token}` }));
    expect(await who("c2VjcmV0==")).toBe("hw1");
    expect(await who("c2VjcmV0")).toBeNull();
  });
});

describe("configFromEnv: PTT_STORE=redis://…", () => {
  it("takes a redis:// or rediss:// URL, with the prefix and timeout defaults", () => {
    const config = configFromEnv({ PTT_STORE: "redis://:secret@10.0.0.5:6380/2" });
    expect(config.store).toBe("redis");
    expect(config.redis).toEqual({
      url: "redis://:secret@10.0.0.5:6380/2",
      prefix: "ptt",
      commandTimeoutMs: 1000,
    });
    const tls = configFromEnv({
      PTT_STORE: "rediss://cache.example:6379",
      PTT_REDIS_PREFIX: "ptt-staging",
      PTT_REDIS_TIMEOUT_MS: "250",
    });
    expect(tls.redis).toEqual({
      url: "rediss://cache.example:6379",
      prefix: "ptt-staging",
      commandTimeoutMs: 250,
    });
    expect(configFromEnv({}).redis).toBeUndefined();
  });

  it("refuses a bad URL without echoing it, a prefix that would change the hash tag, and Redis settings without Redis", () => {
    expect(() => configFromEnv({ PTT_STORE: "redis://:pw@[bad" })).toThrow(
      /^PTT_STORE: not a valid redis:\/\/ or rediss:\/\/ URL$/,
    );
    expect(() =>
      configFromEnv({ PTT_STORE: "redis://localhost", PTT_REDIS_PREFIX: "a{b}" }),
    ).toThrow(/^PTT_REDIS_PREFIX: /);
    expect(() => configFromEnv({ PTT_REDIS_PREFIX: "x" })).toThrow(
      "PTT_REDIS_PREFIX: only used with PTT_STORE=redis://…",
    );
    expect(() => configFromEnv({ PTT_STORE: "redis", PTT_REDIS_TIMEOUT_MS: "5" })).toThrow(
      /PTT_STORE|PTT_REDIS_TIMEOUT_MS/,
    );
  });
});

describe("configFromEnv: connection limits (README, Limits and timeouts)", () => {
  it("defaults, each variable read, bad values refused naming the variable", () => {
    expect(configFromEnv({}).connections).toEqual(DEFAULT_CONNECTION_LIMITS);
    const env: Record<string, string> = {};
    let n = 1000;
    for (const name of Object.values(CONNECTION_LIMIT_VARS)) env[name] = String(++n);
    const read = configFromEnv(env).connections;
    for (const [key, name] of Object.entries(CONNECTION_LIMIT_VARS)) {
      expect(read[key as keyof typeof read], name).toBe(Number(env[name]));
    }
    for (const name of Object.values(CONNECTION_LIMIT_VARS)) {
      for (const bad of ["0", "-1", "1.5", "abc"]) {
        expect(() => configFromEnv({ [name]: bad }), `${name}=${bad}`).toThrow(
          new RegExp(`^${name}: must be an integer`),
        );
      }
    }
  });

  it("a headers timeout longer than the request timeout is refused", () => {
    expect(() =>
      configFromEnv({ PTT_HEADERS_TIMEOUT_MS: "5000", PTT_REQUEST_TIMEOUT_MS: "1000" }),
    ).toThrow(/^PTT_HEADERS_TIMEOUT_MS \(5000\) must not exceed PTT_REQUEST_TIMEOUT_MS \(1000\)/);
  });
});
