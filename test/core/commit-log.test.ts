import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { LazyHandlerContext } from "../../src/core/handler-context.js";
import { createPttCore } from "../../src/core/ptt-core.js";
import { createStreamingHandlers } from "../../src/core/streaming-service.js";
import { RequestPhase, StreamingService, StreamRequestSchema } from "../../src/gen/streaming_pb.js";
import type { Req } from "../contract/calls.js";

// The commit log line (what operators count holds by): `chunks` is what the hold collected,
// not the COMMIT's own chunk_text or prompt.
describe("the commit log line", () => {
  it("counts the COLLECT chunks only", async () => {
    const lines: Record<string, unknown>[] = [];
    const keep = (msg: string, fields?: Record<string, unknown>) => lines.push({ msg, ...fields });
    const core = createPttCore({
      logger: { debug() {}, info: keep, warn: keep, error: keep },
    });
    const handlers = createStreamingHandlers(core);
    const call = async (init: Partial<Req>) => {
      const ctx = new LazyHandlerContext({
        method: StreamingService.method.streamAudio,
        protocolName: "test",
        url: "http://test/",
        requestHeader: new Headers(),
      });
      const req = create(StreamRequestSchema, { hardwareId: "dev-1", sessionId, ...init });
      for await (const _ of handlers.streamAudio(req, ctx)) {
        // drain
      }
    };
    const sessionId = crypto.randomUUID();
    await call({ phase: RequestPhase.COLLECT, chunkSeq: 1, chunkText: "one " });
    await call({ phase: RequestPhase.COLLECT, chunkSeq: 2, chunkText: "one two" });
    await call({ phase: RequestPhase.COMMIT, chunkText: " three", prompt: "and a prompt" });
    expect(lines.filter((l) => l.msg === "commit")).toEqual([
      expect.objectContaining({ hardwareId: "dev-1", sessionId, chunks: 2 }),
    ]);
  });
});
