import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { LazyHandlerContext } from "../../src/core/handler-context.js";
import type { ReplyPart, Workflow } from "../../src/core/ports.js";
import { createPttCore } from "../../src/core/ptt-core.js";
import { createStreamingHandlers } from "../../src/core/streaming-service.js";
import { RequestPhase, StreamingService, StreamRequestSchema } from "../../src/gen/streaming_pb.js";

/** A workflow that yields three text parts and reports what the core says was delivered. */
function recordingWorkflow(seen: string[]): Workflow {
  return async function* (_turn, _signal, reply): AsyncGenerator<ReplyPart> {
    reply?.onEnd(() => void seen.push(reply.delivered()));
    yield { kind: "text", text: "A. " };
    yield { kind: "text", text: "B. " };
    yield { kind: "text", text: "C." };
  };
}

function commitCall(workflow: Workflow) {
  const core = createPttCore({ workflow });
  const handlers = createStreamingHandlers(core);
  const ctx = new LazyHandlerContext({
    method: StreamingService.method.streamAudio,
    protocolName: "test",
    url: "http://test/",
    requestHeader: new Headers(),
  });
  const req = create(StreamRequestSchema, {
    hardwareId: "dev-1",
    sessionId: crypto.randomUUID(),
    phase: RequestPhase.COMMIT,
    prompt: "go",
  });
  return handlers.streamAudio(req, ctx)[Symbol.asyncIterator]();
}

// Every transport writes a frame before it pulls the next one, and returns the call's generator
// when it could not write: this drives the handler exactly as they do.
describe("delivered text (what the workflow is told the client received)", () => {
  it("counts a frame once the transport pulled the next one, never the frame it dropped", async () => {
    const seen: string[] = [];
    const it = commitCall(recordingWorkflow(seen));
    expect((await it.next()).value?.content).toEqual({ case: "textChunk", value: "A. " });
    // "A. " written; "B. " pulled, but the connection failed before it was written.
    expect((await it.next()).value?.content).toEqual({ case: "textChunk", value: "B. " });
    await it.return?.(undefined);
    expect(seen).toEqual(["A. "]);
  });

  it("is the whole text of a reply that completed", async () => {
    const seen: string[] = [];
    const it = commitCall(recordingWorkflow(seen));
    for (let r = await it.next(); !r.done; r = await it.next()) {
      // drain
    }
    expect(seen).toEqual(["A. B. C."]);
  });
});
