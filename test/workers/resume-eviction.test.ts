import { runInDurableObject } from "cloudflare:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import type { StreamResponse } from "../../src/gen/streaming_pb.js";
import {
  client,
  commit,
  deviceStub,
  eventually,
  evict,
  liveCore,
  newDevice,
  replyText,
  streamAudio,
  swapInFreshInstance,
} from "./helpers.js";

/** Ten sentences, 50 ms apart. */
const LONG = Array.from({ length: 10 }, (_, i) => `Sentence ${i + 1}.`).join(" ");
const WINDOW_MS = 3000;

/** A resumed COMMIT: its frames, its turn id, how it ended (undefined = OK). */
async function resume(hw: string, sid: string, from: number) {
  const frames: StreamResponse["content"][] = [];
  let turnId: string | null = null;
  let code: Code | undefined;
  try {
    for await (const res of client.streamAudio(commit(hw, sid), {
      headers: { "ptt-resume-from": String(from) },
      onHeader: (h) => {
        turnId = h.get("ptt-turn-id");
      },
    })) {
      frames.push(res.content);
    }
  } catch (err) {
    code = ConnectError.from(err).code;
  }
  return { frames, turnId, code };
}

/** The object's reply-journal keys (heads "rh:", frames "rf:"). */
async function journalKeys(hw: string): Promise<string[]> {
  return runInDurableObject(deviceStub(hw), (_instance, state) => [
    ...[...state.storage.kv.list({ prefix: "rh:" })].map(([k]) => k),
    ...[...state.storage.kv.list({ prefix: "rf:" })].map(([k]) => k),
  ]);
}

// The device object journals each reply in its storage (src/runtimes/cloudflare/storage-journal.ts):
// a reply whose caller dropped is resumed from storage by a new instance of the object.
describe("resume after the device object was evicted", () => {
  it("drop after 2 frames, evict, resume: the rest once, same turn id, no second workflow run; keys gone after the window", async () => {
    const hw = newDevice("resume-evict");
    const vars = { PTT_ECHO_DELAY_MS: "50", PTT_RESUME_WINDOW_MS: String(WINDOW_MS) };
    // What an uninterrupted reply is (the echo workflow is deterministic).
    await swapInFreshInstance(hw, vars);
    const whole = await streamAudio({ ...commit(hw, crypto.randomUUID()), prompt: LONG });
    expect(whole.code).toBeUndefined();
    expect(whole.frames.length).toBeGreaterThan(3);

    const sid = crypto.randomUUID();
    const key = { hardwareId: hw, sessionId: sid };
    const got: StreamResponse["content"][] = [];
    const call = new AbortController();
    await expect(
      (async () => {
        for await (const res of client.streamAudio(
          { ...commit(hw, sid), prompt: LONG },
          { signal: call.signal },
        )) {
          got.push(res.content);
          if (got.length === 2) call.abort(); // the connection drops after two frames
        }
      })(),
    ).rejects.toThrow();
    expect(got).toHaveLength(2);
    // The reply runs on into the journal (the resume window) to its end.
    const head = await eventually(
      () =>
        liveCore(hw, async (core) =>
          (await core.journal.head(key))?.end ? core.journal.head(key) : undefined,
        ),
      "the reply's end in the journal",
    );
    expect(head?.frames).toBe(whole.frames.length - 1);

    await evict(hw);
    const { frames: rest, code, turnId } = await resume(hw, sid, 2);
    expect(code).toBeUndefined();
    expect(turnId).toBe(head?.turnId);
    expect([...got, ...rest]).toEqual(whole.frames);
    expect(replyText([...got, ...rest])).toBe(replyText(whole.frames));
    expect(rest.at(-1)).toEqual({ case: "endMessage", value: "RESPONSE_COMPLETED" });
    // The new instance replayed from storage: it started no workflow.
    expect(await liveCore(hw, (core) => core.metrics.workflowRuns)).toBe(0);

    // The window passes: the object's alarm drops the journals, nothing is left.
    expect(await journalKeys(hw)).not.toEqual([]);
    await eventually(
      async () => ((await journalKeys(hw)).length === 0 ? true : undefined),
      "the journal keys to be dropped",
      WINDOW_MS + 5000,
    );
    const late = await resume(hw, sid, 2);
    expect(late.code).toBe(Code.NotFound);
    expect(late.frames.filter((f) => f.case !== "errorMessage")).toEqual([]);
  });

  it("evicted while the reply still ran: a resume replays what was written, then UNAVAILABLE at once", async () => {
    const hw = newDevice("resume-evict-running");
    // 1 s between sentences: the reply is still running when the object is evicted.
    await swapInFreshInstance(hw, { PTT_ECHO_DELAY_MS: "1000", PTT_RESUME_WINDOW_MS: "30000" });
    const sid = crypto.randomUUID();
    const key = { hardwareId: hw, sessionId: sid };
    const call = new AbortController();
    await expect(
      (async () => {
        for await (const res of client.streamAudio(
          { ...commit(hw, sid), prompt: LONG },
          { signal: call.signal },
        )) {
          if (res.content.case === "textChunk") call.abort();
        }
      })(),
    ).rejects.toThrow();
    const written = await liveCore(hw, async (core) => (await core.journal.head(key))?.frames);
    expect(written).toBeGreaterThan(0);
    await evict(hw);
    const started = Date.now();
    const r = await resume(hw, sid, 0);
    expect(r.code).toBe(Code.Unavailable);
    expect(replyText(r.frames)).toMatch(/^Sentence 1\. /);
    expect(r.frames.some((f) => f.case === "endMessage")).toBe(false);
    // Told at once, not after waiting out the window for frames that cannot come.
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(await liveCore(hw, (core) => core.metrics.workflowRuns)).toBe(0);
  });
});
