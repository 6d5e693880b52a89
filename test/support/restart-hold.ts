import { expect } from "vitest";
import {
  ChunkMode,
  collect,
  commit,
  endMessage,
  newDevice,
  newSession,
  replyText,
  type StreamingClient,
  streamAudio,
} from "../contract/calls.js";

/** How a test starts and stops the runtime under test, on state that outlives the process. */
export interface Restartable {
  /** Starts the runtime; a client for it, named for the phase of the test. */
  start(phase: "before" | "after"): Promise<StreamingClient>;
  /** Stops the runtime (and checks how it stopped, where that matters). */
  stop(): Promise<void>;
}

/**
 * A hold survives a restart: COLLECT seq 1, 3, 2, stop the runtime, start it again on the
 * same state, resend seq 2 (a duplicate), COMMIT: the full text and RESPONSE_COMPLETED.
 */
export async function expectHoldSurvivesRestart(
  devicePrefix: string,
  runtime: Restartable,
): Promise<void> {
  const hw = newDevice(devicePrefix);
  const sid = newSession();
  const delta = { chunkMode: ChunkMode.DELTA };

  const before = await runtime.start("before");
  for (const [seq, text] of [
    [1, "nothing "],
    [3, "is lost"],
    [2, "here "],
  ] as const) {
    expect((await streamAudio(before, collect(hw, sid, seq, text, delta))).code).toBeUndefined();
  }
  await runtime.stop();

  const after = await runtime.start("after");
  const dup = await streamAudio(after, collect(hw, sid, 2, "here ", delta));
  expect(dup.trailers.get("ptt-collect")).toBe("duplicate");
  const r = await streamAudio(after, commit(hw, sid));
  expect(r.code).toBeUndefined();
  expect(replyText(r)).toBe("nothing here is lost");
  expect(endMessage(r)).toBe("RESPONSE_COMPLETED");
}
