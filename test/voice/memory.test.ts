import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RequestPhase } from "../../src/gen/streaming_pb.js";
import { commit, newDevice, newSession, replyText, streamAudio } from "../contract/calls.js";
import { startVoiceServer, until, type VoiceServer } from "./voice-server.js";

let v: VoiceServer;
beforeAll(async () => {
  v = await startVoiceServer({ PTT_MEMORY_TURNS: "2", PTT_SYSTEM_PROMPT: "S" });
});
afterAll(() => v.close());

/** The messages of the last chat request. */
const lastMessages = () =>
  v.fake.to("/v1/chat/completions").at(-1)?.json?.messages as { role: string; content: unknown }[];

async function turn(device: string, prompt: string, tokens: string[], extra = {}) {
  v.fake.chat = { tokens };
  const r = await streamAudio(v.client, commit(device, newSession(), { prompt, ...extra }));
  expect(r.code).toBeUndefined();
  return r;
}

describe("openai workflow: memory", () => {
  it("sends each device its own remembered turns, at most PTT_MEMORY_TURNS of them", async () => {
    const a = newDevice();
    const b = newDevice();
    await turn(a, "one", ["Uno."]);
    await turn(b, "other", ["Otro."]);
    await turn(a, "two", ["Dos."]);
    await turn(a, "three", ["Tres."]);
    expect(lastMessages()).toEqual([
      { role: "system", content: "S" },
      { role: "user", content: "one" },
      { role: "assistant", content: "Uno." },
      { role: "user", content: "two" },
      { role: "assistant", content: "Dos." },
      { role: "user", content: "three" },
    ]);
    await turn(a, "four", ["Cuatro."]);
    expect(lastMessages().slice(1, -1)).toEqual([
      { role: "user", content: "two" },
      { role: "assistant", content: "Dos." },
      { role: "user", content: "three" },
      { role: "assistant", content: "Tres." },
    ]);
    await turn(b, "again", ["Ok."]);
    expect(lastMessages().slice(1)).toEqual([
      { role: "user", content: "other" },
      { role: "assistant", content: "Otro." },
      { role: "user", content: "again" },
    ]);
  });

  it("remembers an interrupted reply only as far as the client received it", async () => {
    const device = newDevice();
    // The model has sent "Second part. " too, but the grouper holds it for a longer piece and
    // the interrupt comes first: the client never got it, so the model must not believe it said it.
    v.fake.chat = { tokens: ["First part. ", "Second part. ", "Third."], stallAfter: 2 };
    const received: string[] = [];
    const call = streamAudio(v.client, commit(device, newSession(), { prompt: "tell me" }), {
      onFrame: (f) => {
        if (f.case === "textChunk") received.push(f.value);
      },
    });
    await until(() => received.length === 1, "the first piece");
    await until(
      () => (v.fake.to("/v1/chat/completions").at(-1)?.receivedAt ?? 0) > 0,
      "the upstream request",
    );
    await new Promise((r) => setTimeout(r, 50)); // "Second part. " reaches the server
    await v.client.interruptSession({ hardwareId: device });
    const r = await call;
    expect(r.code).toBe(Code.Canceled);
    expect(replyText(r)).toBe("First part. ");
    await turn(device, "and then?", ["Then."]);
    expect(lastMessages().slice(1)).toEqual([
      { role: "user", content: "tell me" },
      { role: "assistant", content: "First part. " },
      { role: "user", content: "and then?" },
    ]);
  });

  it("remembers nothing of a reply stopped before any text went out", async () => {
    const device = newDevice();
    v.fake.chat = { tokens: ["never"], stallAfter: 0 };
    const call = streamAudio(v.client, commit(device, newSession(), { prompt: "hello?" }));
    await until(
      () => v.fake.to("/v1/chat/completions").at(-1)?.json?.messages !== undefined,
      "the request",
    );
    await until(() => lastMessages().at(-1)?.content === "hello?", "this turn's request");
    await v.client.interruptSession({ hardwareId: device });
    expect((await call).code).toBe(Code.Canceled);
    await turn(device, "hello again", ["Hi."]);
    expect(lastMessages().slice(1)).toEqual([{ role: "user", content: "hello again" }]);
  });

  it("forgets the device's memory on a COMMIT with reset_memory, and on a CANCEL with it", async () => {
    const device = newDevice();
    await turn(device, "remember me", ["Sure."]);
    await turn(device, "fresh start", ["Ok."], { resetMemory: true });
    expect(lastMessages().slice(1)).toEqual([{ role: "user", content: "fresh start" }]);
    const cancel = await streamAudio(v.client, {
      hardwareId: device,
      sessionId: newSession(),
      phase: RequestPhase.CANCEL,
      resetMemory: true,
    });
    expect(cancel.frames).toEqual([{ case: "endMessage", value: "CANCEL_ACCEPTED" }]);
    await turn(device, "after cancel", ["Ok."]);
    expect(lastMessages().slice(1)).toEqual([{ role: "user", content: "after cancel" }]);
  });
});
