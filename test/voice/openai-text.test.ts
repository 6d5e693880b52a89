import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { RequestPhase } from "../../src/gen/streaming_pb.js";
import {
  collect,
  commit,
  endMessage,
  newDevice,
  newSession,
  streamAudio,
} from "../contract/calls.js";
import { openAiError } from "../support/fake-openai.js";
import { startVoiceServer, until, type VoiceServer } from "./voice-server.js";

let v: VoiceServer;
beforeAll(async () => {
  v = await startVoiceServer({ PTT_SYSTEM_PROMPT: "Be brief.", PTT_LLM_TEMPERATURE: "0.5" });
});
afterAll(() => v.close());
beforeEach(() => {
  v.fake.chat = { tokens: ["Hello", "!"] };
  v.logs.length = 0;
});

const texts = (r: Awaited<ReturnType<typeof streamAudio>>) =>
  r.frames.filter((f) => f.case === "textChunk").map((f) => f.value);

describe("openai workflow: text", () => {
  it("sends the system prompt and the committed text, and streams the answer in sentences", async () => {
    v.fake.chat = {
      tokens: [
        "Sure",
        ".",
        " It",
        " is",
        " 3",
        ".",
        "14",
        " today",
        ".",
        " Anything",
        " else",
        "?",
      ],
    };
    const r = await streamAudio(
      v.client,
      commit(newDevice(), newSession(), { prompt: "hi there" }),
    );
    expect(r.code).toBeUndefined();
    expect(texts(r)).toEqual(["Sure. ", "It is 3.14 today. Anything else?"]);
    expect(endMessage(r)).toBe("RESPONSE_COMPLETED");
    const req = v.fake.to("/v1/chat/completions").at(-1);
    expect(req?.headers.authorization).toBe("Bearer sk-test-secret-key");
    expect(req?.json).toEqual({
      model: "gpt-4o-mini",
      stream: true,
      temperature: 0.5,
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "hi there" },
      ],
    });
  });

  it("sends a screenshot as an image part of the user message", async () => {
    const png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk";
    await streamAudio(
      v.client,
      commit(newDevice(), newSession(), { prompt: "what is this", screenshot: png }),
    );
    const messages = v.fake.to("/v1/chat/completions").at(-1)?.json?.messages as unknown[];
    expect(messages.at(-1)).toEqual({
      role: "user",
      content: [
        { type: "text", text: "what is this" },
        { type: "image_url", image_url: { url: `data:image/png;base64,${png}` } },
      ],
    });
  });

  it("stops the upstream request when the reply is interrupted (the upstream sees the disconnect)", async () => {
    v.fake.chat = { tokens: ["One. ", "Two. ", "Three. "], stallAfter: 2 };
    const device = newDevice();
    const frames: string[] = [];
    const call = streamAudio(v.client, commit(device, newSession(), { prompt: "count" }), {
      onFrame: (f) => {
        if (f.case === "textChunk") frames.push(f.value);
      },
    });
    await until(() => frames.length >= 1, "the first sentence");
    const req = v.fake.to("/v1/chat/completions").at(-1);
    const stoppedAt = performance.now();
    await v.client.interruptSession({ hardwareId: device });
    expect(await req?.ended).toBe("disconnected");
    // On loopback the upstream sees it at once; the bound is loose for a loaded machine.
    expect((req?.disconnectedAt ?? Infinity) - stoppedAt).toBeLessThan(1000);
    const r = await call;
    expect(r.code).toBe(Code.Canceled);
  });

  it.each(["CANCEL", "barge-in"] as const)("stops the upstream request on %s", async (how) => {
    v.fake.chat = { tokens: ["One. ", "Two. "], stallAfter: 1 };
    const device = newDevice();
    const session = newSession();
    let text = 0;
    const call = streamAudio(v.client, commit(device, session, { prompt: "count" }), {
      onFrame: (f) => {
        if (f.case === "textChunk") text++;
      },
    });
    await until(() => text > 0, "the first sentence");
    const req = v.fake.to("/v1/chat/completions").at(-1);
    if (how === "CANCEL") {
      await streamAudio(v.client, {
        hardwareId: device,
        sessionId: session,
        phase: RequestPhase.CANCEL,
      });
    } else {
      // The first COLLECT of a new hold of the device.
      await streamAudio(v.client, collect(device, newSession(), 1, "next"));
    }
    expect(await req?.ended).toBe("disconnected");
    expect((await call).code).toBe(Code.Canceled);
  });

  it("stops the upstream request when the server shuts down", async () => {
    const own = await startVoiceServer();
    try {
      own.fake.chat = { tokens: ["One. ", "Two. "], stallAfter: 1 };
      let text = 0;
      const call = streamAudio(own.client, commit(newDevice(), newSession(), { prompt: "x" }), {
        onFrame: (f) => {
          if (f.case === "textChunk") text++;
        },
      });
      await until(() => text > 0, "the first sentence");
      const req = own.fake.to("/v1/chat/completions").at(-1);
      const closing = own.server.close(0);
      expect(await req?.ended).toBe("disconnected");
      expect((await call).code).toBe(Code.Canceled);
      await closing;
    } finally {
      await own.close();
    }
  });

  it("with PTT_RESUME_WINDOW_MS=0: stops the upstream request when the caller hangs up", async () => {
    const own = await startVoiceServer({ PTT_RESUME_WINDOW_MS: "0" });
    try {
      own.fake.chat = { tokens: ["One. ", "Two. "], stallAfter: 1 };
      const hangUp = new AbortController();
      const call = streamAudio(own.client, commit(newDevice(), newSession(), { prompt: "x" }), {
        signal: hangUp.signal,
        onFrame: () => hangUp.abort(),
      });
      await call;
      const req = own.fake.to("/v1/chat/completions").at(-1);
      expect(await req?.ended).toBe("disconnected");
    } finally {
      await own.close();
    }
  });

  it("a caller that hangs up leaves the upstream request open for a resume; an interrupt closes it", async () => {
    v.fake.chat = { tokens: ["One. ", "Two. "], stallAfter: 1 };
    const hw = newDevice();
    const hangUp = new AbortController();
    await streamAudio(v.client, commit(hw, newSession(), { prompt: "x" }), {
      signal: hangUp.signal,
      onFrame: () => hangUp.abort(),
    });
    const req = v.fake.to("/v1/chat/completions").at(-1);
    const ended = req?.ended.then((how) => how);
    let settled: string | undefined;
    void ended?.then((how) => {
      settled = how;
    });
    await new Promise((done) => setTimeout(done, 200));
    expect(settled).toBeUndefined();
    const stopped = await v.client.interruptSession({ hardwareId: hw });
    expect(stopped.interruptedSessions).toHaveLength(1);
    expect(await ended).toBe("disconnected");
  });

  it.each([
    [429, Code.ResourceExhausted, "llm: the upstream is rate limited (HTTP 429); retry in 2 s"],
    [500, Code.Unavailable, "llm: the upstream failed (HTTP 500)"],
    [503, Code.Unavailable, "llm: the upstream failed (HTTP 503)"],
    [400, Code.Internal, "llm: the upstream refused the request (HTTP 400)"],
    [401, Code.Internal, "llm: the upstream refused the request (HTTP 401)"],
  ])(
    "maps an upstream %i to its code, with a short message and no retry",
    async (status, code, message) => {
      v.fake.chat = {
        tokens: [],
        error: openAiError(status, "Incorrect API key provided: sk-test-secret-key.", {
          "retry-after": "2",
        }),
      };
      const before = v.fake.to("/v1/chat/completions").length;
      const r = await streamAudio(v.client, commit(newDevice(), newSession(), { prompt: "x" }));
      expect(r.code).toBe(code);
      expect(r.message).toBe(message);
      // Old clients read the reason from the error frame.
      expect(r.frames).toEqual([{ case: "errorMessage", value: message }]);
      if (status === 429) expect(r.trailers.get("ptt-retry-after-ms")).toBe("2000");
      expect(v.fake.to("/v1/chat/completions").length).toBe(before + 1);
      // The operator's log has the upstream's message, with the key redacted.
      const line = v.logs.find((l) => l.msg === "upstream failed");
      expect(line?.fields).toMatchObject({ upstream: "llm", status });
      expect(line?.fields?.message).toBe("Incorrect API key provided: [redacted].");
      expect(JSON.stringify(v.logs)).not.toContain("sk-test-secret-key");
    },
  );

  it("ends with the status alone when the upstream fails after text went out", async () => {
    v.fake.chat = { tokens: ["First. ", "Second. ", "Third"], cutAfter: 2 };
    const r = await streamAudio(v.client, commit(newDevice(), newSession(), { prompt: "x" }));
    expect(texts(r)).toEqual(["First. "]);
    expect(r.frames.some((f) => f.case === "errorMessage" || f.case === "endMessage")).toBe(false);
    expect(r.code).toBe(Code.Unavailable);
  });

  it("answers UNAVAILABLE when the upstream is unreachable", async () => {
    const dead = await startVoiceServer({ OPENAI_BASE_URL: "http://127.0.0.1:9/v1" });
    try {
      const r = await streamAudio(dead.client, commit(newDevice(), newSession(), { prompt: "x" }));
      expect(r.code).toBe(Code.Unavailable);
      expect(r.message).toBe("llm: the upstream is unreachable");
    } finally {
      await dead.close();
    }
  });

  it("answers DEADLINE_EXCEEDED when the upstream is slower than PTT_LLM_TIMEOUT_MS, and closes it", async () => {
    const slow = await startVoiceServer({ PTT_LLM_TIMEOUT_MS: "100" });
    try {
      slow.fake.chat = { tokens: ["late"], ttfbMs: 2000 };
      const r = await streamAudio(slow.client, commit(newDevice(), newSession(), { prompt: "x" }));
      expect(r.code).toBe(Code.DeadlineExceeded);
      expect(r.message).toBe("llm: no answer from the upstream within 100 ms");
      expect(await slow.fake.to("/v1/chat/completions")[0]?.ended).toBe("disconnected");
    } finally {
      await slow.close();
    }
  });

  it("fails an upstream stream that ends without [DONE] or finish_reason", async () => {
    v.fake.chat = { tokens: ["Cut", " short"], cutAfter: 1 };
    const r = await streamAudio(v.client, commit(newDevice(), newSession(), { prompt: "x" }));
    expect(r.code).toBe(Code.Unavailable);
    expect(r.frames.some((f) => f.case === "endMessage")).toBe(false);
  });
});
