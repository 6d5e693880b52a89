// How a COMMIT learns that its call is gone without building AbortSignals: LazyHandlerContext's
// onAbort (the same reasons, once, as its signal), onCallAbort for any context, and Stopper
// (the wait for reply frames, ended by the call's abort or a resume taking the reply over).
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { Stopper } from "../../src/core/abortable.js";
import {
  ABORTED,
  LazyHandlerContext,
  onCallAbort,
  throwIfCallAborted,
} from "../../src/core/handler-context.js";
import { StreamingService } from "../../src/gen/streaming_pb.js";

const method = StreamingService.method.streamAudio;
const lazy = (shutdownSignal?: AbortSignal, timeoutMs?: number) =>
  new LazyHandlerContext({ method, protocolName: "grpc", shutdownSignal, timeoutMs });

describe("LazyHandlerContext.onAbort", () => {
  it("tells every listener the first reason, once, as the signal gets it", () => {
    const ctx = lazy();
    const heard: unknown[] = [];
    ctx.onAbort((r) => heard.push(["a", r]));
    ctx.onAbort((r) => heard.push(["b", r]));
    ctx.abort("first");
    ctx.abort("second");
    expect(heard).toEqual([
      ["a", "first"],
      ["b", "first"],
    ]);
    expect(ctx.signal.reason).toBe("first");
  });

  it("hears the server's shutdown without the signal being read", () => {
    const shutdown = new AbortController();
    const ctx = lazy(shutdown.signal);
    const heard: unknown[] = [];
    ctx.onAbort((r) => heard.push(r));
    shutdown.abort("shutting down");
    expect(heard).toEqual(["shutting down"]);
    expect(ctx.aborted).toBe(true);
  });

  it("hears the deadline", async () => {
    const ctx = lazy(undefined, 5);
    const reason = await new Promise((resolve) => ctx.onAbort(resolve));
    expect(reason).toBeInstanceOf(ConnectError);
    expect((reason as ConnectError).code).toBe(Code.DeadlineExceeded);
  });

  it("calls a listener at once when the call already aborted (shutdown before it came too)", () => {
    const ctx = lazy();
    ctx.finish();
    const heard: unknown[] = [];
    ctx.onAbort((r) => heard.push(r));
    expect(heard).toEqual([ABORTED]);
    const shutdown = new AbortController();
    shutdown.abort("down");
    const late = lazy(shutdown.signal);
    late.onAbort((r) => heard.push(r));
    expect(heard).toEqual([ABORTED, "down"]);
  });

  it("stops calling a listener once it stopped listening; the shutdown listener goes at the end", () => {
    const shutdown = new AbortController();
    const ctx = lazy(shutdown.signal);
    const heard: unknown[] = [];
    const stop = ctx.onAbort((r) => heard.push(["gone", r]));
    ctx.onAbort((r) => heard.push(["kept", r]));
    stop();
    ctx.finish();
    expect(heard).toEqual([["kept", ABORTED]]);
    // The call ended: the server's signal no longer holds a listener for it.
    shutdown.abort("later");
    expect(heard).toEqual([["kept", ABORTED]]);
  });
});

describe("onCallAbort and throwIfCallAborted on any HandlerContext", () => {
  it("listen to a plain context's signal", () => {
    const controller = new AbortController();
    const ctx = { signal: controller.signal } as never;
    const heard: unknown[] = [];
    const stop = onCallAbort(ctx, (r) => heard.push(r));
    expect(() => throwIfCallAborted(ctx)).not.toThrow();
    controller.abort("bye");
    stop();
    expect(heard).toEqual(["bye"]);
    expect(() => throwIfCallAborted(ctx)).toThrow("bye");
  });

  it("throw a lazy context's reason", () => {
    const ctx = lazy();
    expect(() => throwIfCallAborted(ctx)).not.toThrow();
    ctx.abort(new ConnectError("gone", Code.Canceled));
    expect(() => throwIfCallAborted(ctx)).toThrow("gone");
  });
});

describe("Stopper", () => {
  it("is the raced promise until stopped, then the first reason", async () => {
    const stopper = new Stopper();
    await expect(stopper.race(Promise.resolve(1))).resolves.toBe(1);
    const pending = stopper.race(new Promise(() => {}));
    stopper.stop("call gone");
    stopper.stop("taken over");
    await expect(pending).rejects.toBe("call gone");
    await expect(stopper.race(Promise.resolve(2))).rejects.toBe("call gone");
  });

  it("rejects at once once stopped, even against a settled promise", async () => {
    const stopper = new Stopper();
    stopper.stop("gone");
    await expect(stopper.race(Promise.resolve("frame"))).rejects.toBe("gone");
  });
});
