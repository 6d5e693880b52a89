import { Code, createClient } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { StreamingService, type StreamResponse } from "../../src/gen/streaming_pb.js";
import {
  type CallResult,
  clientFor,
  collect,
  commit,
  endMessage,
  newDevice,
  newSession,
  replyText,
  type StreamingClient,
  streamAudio,
} from "./calls.js";
import { longText } from "./commit.cases.js";
import type { Capabilities, Target } from "./target.js";

type Frame = StreamResponse["content"];

/** A COMMIT whose connection "drops" (the client hangs up) once it holds `k` frames. */
async function commitAndDrop(
  client: StreamingClient,
  hw: string,
  sid: string,
  prompt: string,
  k: number,
): Promise<CallResult> {
  const hangUp = new AbortController();
  let seen = 0;
  const r = await streamAudio(client, commit(hw, sid, { prompt }), {
    signal: hangUp.signal,
    onFrame: () => {
      if (++seen === k) hangUp.abort();
    },
  });
  // The client takes the first k frames as what it has (a transport may hand over a few it had
  // already read before the hang-up took effect: a dropped connection loses those).
  expect(r.frames.length).toBeGreaterThanOrEqual(k);
  return { ...r, frames: r.frames.slice(0, k) };
}

function resume(client: StreamingClient, hw: string, sid: string, from: number) {
  return streamAudio(client, commit(hw, sid), { headers: { "ptt-resume-from": String(from) } });
}

/** The turn id, wherever the transport delivers response headers. */
function turnIdOf(r: CallResult): string | null {
  return r.headers.get("ptt-turn-id") ?? r.trailers.get("ptt-turn-id");
}

/**
 * The turn id the dropped call was given. Where response headers arrive only with the call's
 * end (headersWithTrailers: Workers' Connect and gRPC-Web), a dropped call never saw it: the
 * reply's id is then read from a resume from frame 0, which the resume under test must match.
 */
async function droppedTurnId(
  caps: Capabilities,
  first: CallResult,
  again: () => Promise<CallResult>,
): Promise<string | null> {
  const seen = turnIdOf(first);
  if (seen !== null || !caps.headersWithTrailers) return seen;
  return turnIdOf(await again());
}

/** docs/protocol.md §9: a reply survives a dropped connection. */
export function resumeCases(caps: Capabilities, target: () => Target): void {
  // See the declaration of noResumeHeader for the reason.
  describe.skipIf(caps.noResumeHeader === true)("resuming a reply (§9)", () => {
    it("drop after k frames, resume while it runs: each frame once, same turn id, the same text, the workflow ran once", async () => {
      const t = target();
      const client = clientFor(t);
      const prompt = longText(60);
      // The reply an uninterrupted client gets, for comparison.
      const whole = await streamAudio(client, commit(newDevice(), newSession(), { prompt }));
      expect(whole.code).toBeUndefined();
      const hw = newDevice();
      const sid = newSession();
      const runsBefore = await t.workflowRuns?.();
      const first = await commitAndDrop(client, hw, sid, prompt, 3);
      const rest = await resume(client, hw, sid, first.frames.length);
      expect(rest.code).toBeUndefined();
      const frames: Frame[] = [...first.frames, ...rest.frames];
      expect(frames).toEqual(whole.frames);
      expect(endMessage(rest)).toBe("RESPONSE_COMPLETED");
      const id = await droppedTurnId(caps, first, () => resume(client, hw, sid, 0));
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
      expect(turnIdOf(rest)).toBe(id);
      if (runsBefore !== undefined) expect(await t.workflowRuns?.()).toBe(runsBefore + 1);
    });

    it("a resume after the reply finished replays the rest, and a second resume the same again", async () => {
      const t = target();
      const client = clientFor(t);
      const hw = newDevice();
      const sid = newSession();
      const prompt = "One. Two. Three. Four.";
      const first = await commitAndDrop(client, hw, sid, prompt, 1);
      const a = await resume(client, hw, sid, 1);
      // `a` read the reply to its end: it has finished now.
      const b = await resume(client, hw, sid, 1);
      expect(replyText(first) + replyText(a)).toBe(prompt);
      expect(b.frames).toEqual(a.frames);
      expect(b.code).toBeUndefined();
      expect(turnIdOf(b)).toMatch(/^[0-9a-f-]{36}$/);
      expect(turnIdOf(b)).toBe(turnIdOf(a));
      expect(turnIdOf(b)).toBe(await droppedTurnId(caps, first, async () => a));
      // From the very end: only the ending.
      const all = first.frames.length + a.frames.length - 1;
      const end = await resume(client, hw, sid, all);
      expect(end.frames).toEqual([{ case: "endMessage", value: "RESPONSE_COMPLETED" }]);
    });

    it("ptt-resume-from past the end: OUT_OF_RANGE naming the header; the reply is untouched", async () => {
      const client = clientFor(target());
      const hw = newDevice();
      const sid = newSession();
      const done = await streamAudio(client, commit(hw, sid, { prompt: "Just this." }));
      expect(done.code).toBeUndefined();
      const r = await resume(client, hw, sid, 2);
      expect(r.code).toBe(Code.OutOfRange);
      expect(r.message).toBe("ptt-resume-from: 2 is past the end of the reply (1 frames)");
      expect(r.frames).toEqual([
        {
          case: "errorMessage",
          value: "ptt-resume-from: 2 is past the end of the reply (1 frames)",
        },
      ]);
      expect(replyText(await resume(client, hw, sid, 0))).toBe("Just this.");
    });

    it("a session never committed: NOT_FOUND, and its buffer stays for the real COMMIT", async () => {
      const client = clientFor(target());
      const hw = newDevice();
      const sid = newSession();
      expect((await resume(client, hw, sid, 0)).code).toBe(Code.NotFound);
      await streamAudio(client, collect(hw, sid, 1, "still here"));
      const r = await resume(client, hw, sid, 0);
      expect(r.code).toBe(Code.NotFound);
      expect(r.message).toMatch(
        /^session [0-9a-f-]{36} has no reply to resume: it was never committed/,
      );
      expect(replyText(await streamAudio(client, commit(hw, sid)))).toBe("still here");
    });

    it("without the header a repeated COMMIT is still ALREADY_EXISTS; a bad header is INVALID_ARGUMENT", async () => {
      const client = clientFor(target());
      const hw = newDevice();
      const sid = newSession();
      await streamAudio(client, commit(hw, sid, { prompt: "Once." }));
      expect((await streamAudio(client, commit(hw, sid))).code).toBe(Code.AlreadyExists);
      const bad = await streamAudio(client, commit(hw, sid), {
        headers: { "ptt-resume-from": "-1" },
      });
      expect(bad.code).toBe(Code.InvalidArgument);
      expect(bad.message).toBe(
        "ptt-resume-from: must be the number of reply frames received (0 or more)",
      );
    });

    it("interrupted after the drop: the resume replays what was produced and ends CANCELLED", async () => {
      const t = target();
      const client = clientFor(t);
      const hw = newDevice();
      const sid = newSession();
      const first = await commitAndDrop(client, hw, sid, longText(300), 2);
      // The reply went on without its caller: the interrupt finds it running.
      const stopped = await createClient(StreamingService, t.transport).interruptSession({
        hardwareId: hw,
      });
      expect(stopped.interruptedSessions).toEqual([sid]);
      const r = await resume(client, hw, sid, first.frames.length);
      expect(r.code).toBe(Code.Canceled);
      expect(r.message).toBe("reply interrupted by InterruptSession");
      expect(endMessage(r)).toBeUndefined();
      expect(r.frames.every((f) => f.case === "textChunk")).toBe(true);
      expect(r.frames.length).toBeLessThan(298);
      expect(turnIdOf(r)).toMatch(/^[0-9a-f-]{36}$/);
      expect(turnIdOf(r)).toBe(await droppedTurnId(caps, first, async () => r));
    });
  });
}
