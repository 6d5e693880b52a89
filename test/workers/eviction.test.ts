import { abortAllDurableObjects, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { ChunkMode } from "../../src/gen/streaming_pb.js";
import {
  collect,
  commit,
  deviceStub,
  newDevice,
  recordKey,
  replyText,
  stored,
  streamAudio,
  swapInFreshInstance,
} from "./helpers.js";

const delta = { chunkMode: ChunkMode.DELTA };

/** True while the object's current instance is the one `mark` was called on. */
async function marked(hw: string, mark = false): Promise<boolean> {
  return runInDurableObject(deviceStub(hw), (instance) => {
    const slot = instance as unknown as { testMark?: true };
    if (mark) slot.testMark = true;
    return slot.testMark === true;
  });
}

// Sessions are journaled in the object's SQLite storage: an object that loses its
// memory (eviction, a reset, a new instance after hibernation) rebuilds them from it.
describe("eviction: sessions survive the object losing its memory", () => {
  it("COLLECT, reset every object (abortAllDurableObjects), COMMIT: every chunk is in the reply", async () => {
    const hw = newDevice("evict");
    const sid = crypto.randomUUID();
    for (const [seq, text] of [
      [1, "nothing "],
      [3, "is "],
      [2, "here "],
    ] as const) {
      const r = await streamAudio({ ...collect(hw, sid, seq, text), ...delta });
      expect(r.code).toBeUndefined();
    }
    await marked(hw, true);

    await abortAllDurableObjects();
    // A new instance of the object: nothing of the old one's memory is left.
    expect(await marked(hw)).toBe(false);

    // Still OPEN with every seq: a resend is a duplicate, a new chunk lands in its place.
    const dup = await streamAudio({ ...collect(hw, sid, 2, "here "), ...delta });
    expect(dup.trailers.get("ptt-collect")).toBe("duplicate");
    expect(dup.trailers.get("ptt-last-seq")).toBe("3");
    const more = await streamAudio({ ...collect(hw, sid, 4, "lost"), ...delta });
    expect(more.trailers.get("ptt-collect")).toBe("accepted");

    await abortAllDurableObjects();
    const r = await streamAudio(commit(hw, sid));
    expect(r.code).toBeUndefined();
    expect(replyText(r.frames)).toBe("nothing here is lost");
    expect(r.frames.at(-1)).toEqual({ case: "endMessage", value: "RESPONSE_COMPLETED" });

    // The seal is journaled too: after another reset a repeated COMMIT is refused.
    await abortAllDurableObjects();
    expect((await stored(hw)).records.get(recordKey(hw, sid))?.state).toBe("committed");
    const again = await streamAudio(commit(hw, sid));
    expect(again.message).toBe(`session ${sid} is already committed`);
  });

  it("a fresh DeviceObject over the same state (constructor reload) commits every chunk", async () => {
    const hw = newDevice("fresh");
    const sid = crypto.randomUUID();
    const chunks = ["one ", "two ", "three ", "four"];
    for (const [i, text] of chunks.entries()) {
      expect((await streamAudio(collect(hw, sid, i + 1, text))).code).toBeUndefined();
    }
    await swapInFreshInstance(hw);
    const r = await streamAudio(commit(hw, sid));
    expect(r.code).toBeUndefined();
    expect(replyText(r.frames)).toBe("one two three four");
  });
});
