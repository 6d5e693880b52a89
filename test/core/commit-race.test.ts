import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createHandlerContext } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { createMemoryStore } from "../../src/core/drivers/memory.js";
import { DEFAULT_LIMITS } from "../../src/core/limits.js";
import type { SessionStore } from "../../src/core/ports.js";
import { createPttCore } from "../../src/core/ptt-core.js";
import { createStreamingHandlers } from "../../src/core/streaming-service.js";
import { systemClock } from "../../src/core/system-clock.js";
import {
  RequestPhase,
  StreamingService,
  StreamRequestSchema,
  type StreamResponse,
} from "../../src/gen/streaming_pb.js";

/** The memory store with a slow COMMIT, as a remote store (Redis, a Durable Object) has. */
function slowCommitStore(ms: number): SessionStore {
  const store = createMemoryStore({ limits: DEFAULT_LIMITS, clock: systemClock });
  return {
    ...store,
    async commit(key, pieces, turnId) {
      await new Promise((r) => setTimeout(r, ms));
      return store.commit(key, pieces, turnId);
    },
  };
}

function ctx() {
  return createHandlerContext({
    service: StreamingService,
    method: StreamingService.method.streamAudio,
    protocolName: "test",
    requestMethod: "POST",
    url: "http://localhost/",
  });
}

async function run(calls: AsyncIterable<StreamResponse>) {
  const frames: StreamResponse["content"][] = [];
  try {
    for await (const f of calls) frames.push(f.content);
    return { frames, code: undefined };
  } catch (err) {
    return { frames, code: ConnectError.from(err).code };
  }
}

// A reply is registered before its buffer is consumed: stopping it while the store
// works must not be lost (in process, so the order of the two calls is exact).
describe("a reply stopped while its COMMIT is still in the store", () => {
  const setup = () => {
    const core = createPttCore({ store: slowCommitStore(30), echoDelayMs: 5 });
    return { core, handlers: createStreamingHandlers(core) };
  };
  const commitReq = (hardwareId: string, sessionId: string) =>
    create(StreamRequestSchema, {
      hardwareId,
      sessionId,
      phase: RequestPhase.COMMIT,
      prompt: "One. Two. Three. Four.",
    });

  it("InterruptSession in the same tick reaches it: CANCELLED, and named", async () => {
    const { core, handlers } = setup();
    const sid = crypto.randomUUID();
    const reply = run(handlers.streamAudio(commitReq("dev-race", sid), ctx()));
    await new Promise((r) => setTimeout(r, 5)); // the COMMIT is inside store.commit now
    const res = await handlers.interruptSession({ hardwareId: "dev-race" } as never, ctx());
    expect(res.interruptedSessions).toEqual([sid]);
    const r = await reply;
    expect(r.code).toBe(Code.Canceled);
    expect(r.frames.some((f) => f.case === "endMessage")).toBe(false);
    expect(core.replies.inFlight).toBe(0);
  });

  it("CANCEL of the same session wins: the COMMIT finds it cancelled and nothing runs", async () => {
    const { core, handlers } = setup();
    const sid = crypto.randomUUID();
    const reply = run(handlers.streamAudio(commitReq("dev-race-2", sid), ctx()));
    await new Promise((r) => setTimeout(r, 5));
    const cancel = await run(
      handlers.streamAudio(
        create(StreamRequestSchema, {
          hardwareId: "dev-race-2",
          sessionId: sid,
          phase: RequestPhase.CANCEL,
        }),
        ctx(),
      ),
    );
    expect(cancel.frames).toEqual([{ case: "endMessage", value: "CANCEL_ACCEPTED" }]);
    const r = await reply;
    expect(r.code).toBe(Code.FailedPrecondition);
    expect(r.frames).toEqual([
      { case: "errorMessage", value: `session ${sid} was cancelled; nothing was committed` },
    ]);
    expect(core.replies.inFlight).toBe(0);
  });
});
