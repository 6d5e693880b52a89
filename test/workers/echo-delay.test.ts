import { describe, expect, it } from "vitest";
import type { StreamResponse } from "../../src/gen/streaming_pb.js";
import {
  client,
  collect,
  commit,
  eventually,
  liveCore,
  newDevice,
  recordKey,
  replyText,
  stored,
  streamAudio,
  swapInFreshInstance,
} from "./helpers.js";

// The object's one alarm belongs to its store (session expiry); a reply's pauses are
// ordinary timers. Regression (was a defect): the echo workflow slept on the alarm too,
// so a new hold re-arming the sweeper dropped the reply's wake-up (the reply hung,
// holding its slot) and the reply's sleeps consumed the sweeper's alarm.
describe("a reply with an echo delay and the store's alarm on one object", () => {
  it("the reply keeps running while new holds open on the device; those holds still expire by alarm", async () => {
    const hw = newDevice("echo-delay");
    // Pauses between sentences; barge-in off so the new holds do not stop the reply.
    await swapInFreshInstance(hw, { PTT_ECHO_DELAY_MS: "100", PTT_BARGE_IN: "off" });
    const sid = crypto.randomUUID();
    const text = "One. Two. Three. Four. Five.";
    const frames: StreamResponse["content"][] = [];
    const holds: string[] = [];
    const hung = new AbortController();
    const watchdog = setTimeout(() => hung.abort(new Error("the reply hung")), 5000);
    try {
      for await (const res of client.streamAudio(
        { ...commit(hw, sid), prompt: text },
        { signal: hung.signal },
      )) {
        frames.push(res.content);
        if (res.content.case !== "textChunk") continue;
        // While the reply pauses before its next sentence, the device opens a new hold.
        const hold = crypto.randomUUID();
        holds.push(hold);
        expect((await streamAudio(collect(hw, hold, 1, "the next hold"))).code).toBeUndefined();
      }
    } finally {
      clearTimeout(watchdog);
    }
    expect(replyText(frames)).toBe(text);
    expect(frames.at(-1)).toEqual({ case: "endMessage", value: "RESPONSE_COMPLETED" });
    expect(holds).toHaveLength(5);
    expect(await liveCore(hw, (core) => core.replies.inFlight)).toBe(0);

    // Nothing touches the holds again: only the alarm can expire them (idle TTL 1 s).
    await eventually(async () => {
      const { records } = await stored(hw);
      const states = holds.map((h) => records.get(recordKey(hw, h))?.state);
      return states.every((s) => s === "expired") ? states : undefined;
    }, "the alarm to expire every new hold");
    expect((await stored(hw)).alarm).not.toBeNull();
  });
});
