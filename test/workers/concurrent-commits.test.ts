import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import type { ServerFrame } from "../../src/gen/bridge_pb.js";
import {
  callDevice,
  collect,
  commit,
  newDevice,
  recordKey,
  replyText,
  stored,
  streamAudio,
  swapInFreshInstance,
} from "./helpers.js";

const N = 100;

// Consume-and-seal is one synchronous step of the object's store, and the object runs
// one event at a time: of any number of concurrent COMMITs, exactly one replies.
describe("100 concurrent COMMITs of one session", () => {
  it("through the Worker (Connect): one reply stream, 99 ALREADY_EXISTS", async () => {
    const hw = newDevice("commits");
    // 100 calls at once can take longer than the suite's 1 s idle TTL on a loaded machine.
    await swapInFreshInstance(hw, { PTT_IDLE_TTL_MS: "60000" });
    const sid = crypto.randomUUID();
    expect((await streamAudio(collect(hw, sid, 1, "only once"))).code).toBeUndefined();
    const results = await Promise.all(
      Array.from({ length: N }, () => streamAudio(commit(hw, sid))),
    );
    const ok = results.filter((r) => r.code === undefined);
    const dup = results.filter((r) => r.code === Code.AlreadyExists);
    expect(ok).toHaveLength(1);
    expect(dup).toHaveLength(N - 1);
    const [winner] = ok;
    expect(replyText(winner?.frames ?? [])).toBe("only once");
    expect(winner?.frames.at(-1)).toEqual({ case: "endMessage", value: "RESPONSE_COMPLETED" });
    for (const r of dup) {
      expect(r.message).toBe(`session ${sid} is already committed`);
      expect(r.frames).toEqual([{ case: "errorMessage", value: r.message }]);
    }
    expect((await stored(hw)).records.get(recordKey(hw, sid))?.state).toBe("committed");
  });

  it("straight into the object's /call endpoint: one reply stream, 99 already_exists", async () => {
    const hw = newDevice("commits-direct");
    await swapInFreshInstance(hw, { PTT_IDLE_TTL_MS: "60000" });
    const sid = crypto.randomUUID();
    const acked = await callDevice(hw, {
      callId: 1,
      body: { case: "streamAudio", value: collect(hw, sid, 1, "exactly once") },
    });
    expect(end(acked)).toMatchObject({ code: "" });
    const calls = await Promise.all(
      Array.from({ length: N }, () =>
        callDevice(hw, { callId: 1, body: { case: "streamAudio", value: commit(hw, sid) } }),
      ),
    );
    const ok = calls.filter((frames) => end(frames).code === "");
    const dup = calls.filter((frames) => end(frames).code === "already_exists");
    expect(ok).toHaveLength(1);
    expect(dup).toHaveLength(N - 1);
    const reply = (ok[0] ?? []).flatMap((f) =>
      f.body.case === "response" ? [f.body.value.content] : [],
    );
    expect(replyText(reply)).toBe("exactly once");
    for (const frames of dup) {
      expect(end(frames).message).toBe(`session ${sid} is already committed`);
    }
  });
});

/** The call's CallEnd: its last frame, and its only one. */
function end(frames: ServerFrame[]) {
  const ends = frames.filter((f) => f.body.case === "end");
  expect(ends).toHaveLength(1);
  const last = frames.at(-1);
  if (last?.body.case !== "end") throw new Error("a call's last frame must be its CallEnd");
  return last.body.value;
}
