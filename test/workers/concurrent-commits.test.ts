import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import {
  collect,
  commit,
  deviceClient,
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

  it("straight into the object's router (Connect over its fetch): one reply, 99 ALREADY_EXISTS", async () => {
    const hw = newDevice("commits-direct");
    await swapInFreshInstance(hw, { PTT_IDLE_TTL_MS: "60000" });
    const sid = crypto.randomUUID();
    const direct = deviceClient(hw);
    const first = await streamAudio(collect(hw, sid, 1, "exactly once"), direct);
    expect([first.code, first.message]).toEqual([undefined, ""]);
    const results = await Promise.all(
      Array.from({ length: N }, () => streamAudio(commit(hw, sid), direct)),
    );
    const ok = results.filter((r) => r.code === undefined);
    const dup = results.filter((r) => r.code === Code.AlreadyExists);
    expect(ok).toHaveLength(1);
    expect(dup).toHaveLength(N - 1);
    expect(replyText(ok[0]?.frames ?? [])).toBe("exactly once");
    for (const r of dup) expect(r.message).toBe(`session ${sid} is already committed`);
  });
});
