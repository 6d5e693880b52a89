import { describe, expect, it } from "vitest";
import { client, commit, eventually, liveCore, newDevice, swapInFreshInstance } from "./helpers.js";

/** Ten sentences, 300 ms apart: a reply of about three seconds. */
const LONG = Array.from({ length: 10 }, (_, i) => `Sentence ${i + 1}.`).join(" ");

// Regression (was a defect): a client that hung up left its reply running in the device
// object to the end, holding a reply slot: nothing told the object the call was gone.
describe("a client that hangs up mid-reply (PTT_RESUME_WINDOW_MS=0)", () => {
  it("stops the reply in the device object and frees its slot", async () => {
    const hw = newDevice("hang-up");
    // Without a resume window: the hang-up itself stops the reply.
    await swapInFreshInstance(hw, { PTT_ECHO_DELAY_MS: "300", PTT_RESUME_WINDOW_MS: "0" });
    const sid = crypto.randomUUID();
    const call = new AbortController();
    let first: string | undefined;
    let running: number | undefined;
    await expect(
      (async () => {
        for await (const res of client.streamAudio(
          { ...commit(hw, sid), prompt: LONG },
          { signal: call.signal },
        )) {
          if (res.content.case === "textChunk") {
            first = res.content.value;
            running = await liveCore(hw, (core) => core.replies.inFlight);
            call.abort(); // the client goes away after the first sentence
          }
        }
      })(),
    ).rejects.toThrow();
    expect(first).toBe("Sentence 1. ");
    expect(running).toBe(1);
    // Well before the reply would have finished (about 3 s), the object has let it go.
    const started = Date.now();
    await eventually(
      () => liveCore(hw, (core) => (core.replies.inFlight === 0 ? true : undefined)),
      "the reply slot to be freed",
      1500,
    );
    expect(Date.now() - started).toBeLessThan(1500);
    // A second call sees no reply running for the device.
    const interrupted = await client.interruptSession({ hardwareId: hw });
    expect(interrupted.interruptedSessions).toEqual([]);
  });
});
