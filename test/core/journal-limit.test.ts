import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { LazyHandlerContext } from "../../src/core/handler-context.js";
import { DEFAULT_LIMITS } from "../../src/core/limits.js";
import type { ReplyPart, Workflow } from "../../src/core/ports.js";
import { createPttCore, type PttCore } from "../../src/core/ptt-core.js";
import { createStreamingHandlers } from "../../src/core/streaming-service.js";
import {
  RequestPhase,
  StreamingService,
  StreamRequestSchema,
  type StreamResponse,
} from "../../src/gen/streaming_pb.js";

/** Ten text frames of 40 characters (each about 44 bytes encoded). */
const tenFrames: Workflow = async function* (): AsyncGenerator<ReplyPart> {
  for (let i = 0; i < 10; i++) yield { kind: "text", text: `${i}`.padEnd(40, ".") };
};

function call(core: PttCore, sessionId: string, headers: Record<string, string> = {}) {
  const ctx = new LazyHandlerContext({
    method: StreamingService.method.streamAudio,
    protocolName: "test",
    url: "http://test/",
    requestHeader: new Headers(headers),
  });
  const req = create(StreamRequestSchema, {
    hardwareId: "dev-journal",
    sessionId,
    phase: RequestPhase.COMMIT,
    prompt: "go",
  });
  return createStreamingHandlers(core).streamAudio(req, ctx)[Symbol.asyncIterator]();
}

async function readAll(it: AsyncIterator<StreamResponse>) {
  const frames: StreamResponse["content"][] = [];
  try {
    for (let r = await it.next(); !r.done; r = await it.next()) frames.push(r.value.content);
    return { frames, error: undefined };
  } catch (err) {
    return { frames, error: ConnectError.from(err) };
  }
}

// docs/protocol.md §9: a journal is bounded by max_journal_bytes, never trimmed silently.
describe("max_journal_bytes", () => {
  const core = () =>
    createPttCore({ workflow: tenFrames, limits: { ...DEFAULT_LIMITS, maxJournalBytes: 200 } });

  it("the live call gets the whole reply; a resume replays to the limit, then RESOURCE_EXHAUSTED", async () => {
    const c = core();
    const sid = crypto.randomUUID();
    const live = await readAll(call(c, sid));
    expect(live.error).toBeUndefined();
    expect(live.frames).toHaveLength(11);
    const resumed = await readAll(call(c, sid, { "ptt-resume-from": "1" }));
    // 200 bytes hold four frames of about 44: frames 1..3 replay, frame 4 is where it stopped.
    expect(resumed.frames).toEqual(live.frames.slice(1, 4));
    expect(resumed.error?.code).toBe(Code.ResourceExhausted);
    expect(resumed.error?.rawMessage).toBe(
      "max_journal_bytes: the reply passed 200 bytes at frame 4; it cannot be resumed from there",
    );
    const past = await readAll(call(c, sid, { "ptt-resume-from": "7" }));
    expect(past.frames).toEqual([{ case: "errorMessage", value: past.error?.rawMessage }]);
    expect(past.error?.code).toBe(Code.ResourceExhausted);
    expect(past.error?.rawMessage).toMatch(/^max_journal_bytes: /);
  });

  it("a dropped call whose reply passes the limit: the workflow is stopped, nobody could read on", async () => {
    const c = core();
    const sid = crypto.randomUUID();
    const it = call(c, sid);
    await it.next();
    await it.return?.(undefined);
    await new Promise((done) => setTimeout(done, 20));
    expect(c.replies.inFlight).toBe(0);
    expect(c.metrics.commits.get("cancelled")).toBe(1);
  });
});
