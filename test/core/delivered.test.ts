import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { LazyHandlerContext } from "../../src/core/handler-context.js";
import type { ReplyPart, Workflow } from "../../src/core/ports.js";
import { createPttCore, type PttCore } from "../../src/core/ptt-core.js";
import { createStreamingHandlers } from "../../src/core/streaming-service.js";
import { RequestPhase, StreamingService, StreamRequestSchema } from "../../src/gen/streaming_pb.js";
import { ManualClock } from "../support/manual-clock.js";

/** A workflow that yields three text parts and reports what the core says was delivered. */
function recordingWorkflow(seen: string[]): Workflow {
  return async function* (_turn, _signal, reply): AsyncGenerator<ReplyPart> {
    reply?.onEnd(() => void seen.push(reply.delivered()));
    yield { kind: "text", text: "A. " };
    yield { kind: "text", text: "B. " };
    yield { kind: "text", text: "C." };
  };
}

function commitCall(core: PttCore, sessionId: string, headers: Record<string, string> = {}) {
  const handlers = createStreamingHandlers(core);
  const ctx = new LazyHandlerContext({
    method: StreamingService.method.streamAudio,
    protocolName: "test",
    url: "http://test/",
    requestHeader: new Headers(headers),
  });
  const req = create(StreamRequestSchema, {
    hardwareId: "dev-1",
    sessionId,
    phase: RequestPhase.COMMIT,
    prompt: "go",
  });
  return { it: handlers.streamAudio(req, ctx)[Symbol.asyncIterator](), ctx };
}

async function drain(it: AsyncIterator<unknown>): Promise<void> {
  for (let r = await it.next(); !r.done; r = await it.next()) {
    // each frame "written"
  }
}

/** Lets the detached run pull the rest of the workflow into the journal. */
const settle = () => new Promise((done) => setTimeout(done, 20));

// Every transport writes a frame before it pulls the next one, and returns the call's generator
// when it could not: this drives the handler exactly as they do.
describe("delivered text (what the workflow is told the client received)", () => {
  it("without a resume window: counts a frame once the next one was pulled, never the one dropped", async () => {
    const seen: string[] = [];
    const core = createPttCore({ workflow: recordingWorkflow(seen), resumeWindowMs: 0 });
    const { it } = commitCall(core, crypto.randomUUID());
    expect((await it.next()).value?.content).toEqual({ case: "textChunk", value: "A. " });
    // "A. " written; "B. " pulled, but the connection failed before it was written.
    expect((await it.next()).value?.content).toEqual({ case: "textChunk", value: "B. " });
    await it.return?.(undefined);
    await settle();
    expect(seen).toEqual(["A. "]);
  });

  it("is the whole text of a reply that completed, settled before the call ends", async () => {
    const seen: string[] = [];
    const core = createPttCore({ workflow: recordingWorkflow(seen) });
    await drain(commitCall(core, crypto.randomUUID()).it);
    expect(seen).toEqual(["A. B. C."]);
  });

  it("a dropped call that nobody resumes: what it received, once the window has passed", async () => {
    const seen: string[] = [];
    const clock = new ManualClock();
    const core = createPttCore({ workflow: recordingWorkflow(seen), clock, resumeWindowMs: 1000 });
    const { it } = commitCall(core, crypto.randomUUID());
    await it.next();
    await it.next();
    await it.return?.(undefined);
    await settle();
    // Still resumable: nothing is final yet.
    expect(seen).toEqual([]);
    clock.advance(1000);
    clock.runDueTimers();
    await settle();
    expect(seen).toEqual(["A. "]);
  });

  it("a resumed reply counts the resumed frames too, settled before the resume ends", async () => {
    const seen: string[] = [];
    const core = createPttCore({ workflow: recordingWorkflow(seen) });
    const sid = crypto.randomUUID();
    const first = commitCall(core, sid).it;
    await first.next();
    await first.next();
    await first.return?.(undefined);
    await settle();
    const resumed = commitCall(core, sid, { "ptt-resume-from": "1" }).it;
    const frames: unknown[] = [];
    for (let r = await resumed.next(); !r.done; r = await resumed.next()) {
      frames.push(r.value.content);
    }
    expect(frames).toEqual([
      { case: "textChunk", value: "B. " },
      { case: "textChunk", value: "C." },
      { case: "endMessage", value: "RESPONSE_COMPLETED" },
    ]);
    expect(seen).toEqual(["A. B. C."]);
  });

  it("the device's next COMMIT settles an unresumed reply first (its memory holds it)", async () => {
    const seen: string[] = [];
    const core = createPttCore({ workflow: recordingWorkflow(seen) });
    const first = commitCall(core, crypto.randomUUID()).it;
    await first.next();
    await first.next();
    await first.return?.(undefined);
    await settle();
    expect(seen).toEqual([]);
    await drain(commitCall(core, crypto.randomUUID()).it);
    expect(seen).toEqual(["A. ", "A. B. C."]);
  });
});
