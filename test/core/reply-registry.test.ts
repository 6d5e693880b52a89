import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { ReplyAborted, ReplyRegistry } from "../../src/core/reply-registry.js";

const reason = (r: { controller: AbortController }) => r.controller.signal.reason as ReplyAborted;

describe("ReplyRegistry.interrupt", () => {
  it("aborts every reply of the device started before the call, once", () => {
    const replies = new ReplyRegistry(10);
    const a = replies.start("hw", "s-a", "t-a");
    const b = replies.start("hw", "s-b", "t-b");
    const other = replies.start("hw-2", "s-a", "t-c");
    expect(replies.interrupt("hw", "interrupted")).toEqual(["s-a", "s-b"]);
    expect(a.controller.signal.aborted).toBe(true);
    expect(reason(a)).toBeInstanceOf(ReplyAborted);
    expect(reason(a).why).toBe("interrupted");
    expect(reason(b).why).toBe("interrupted");
    expect(other.controller.signal.aborted).toBe(false);

    // A later reply is not affected by the earlier call, and aborted ones are not reported twice.
    const c = replies.start("hw", "s-c", "t-d");
    expect(c.controller.signal.aborted).toBe(false);
    expect(replies.interrupt("hw", "interrupted")).toEqual(["s-c"]);
    expect(replies.interrupt("hw", "interrupted")).toEqual([]);
    expect(replies.interrupt("nobody", "interrupted")).toEqual([]);
  });

  it("a reply started while the interrupt runs (from an abort listener) is not aborted", () => {
    const replies = new ReplyRegistry(10);
    const a = replies.start("hw", "s-a", "t-a");
    let late: ReturnType<ReplyRegistry["start"]> | undefined;
    a.controller.signal.addEventListener("abort", () => {
      late = replies.start("hw", "s-late", "t-late");
    });
    expect(replies.interrupt("hw", "barge-in")).toEqual(["s-a"]);
    expect(late?.controller.signal.aborted).toBe(false);
  });

  it("spares the session named in except", () => {
    const replies = new ReplyRegistry(10);
    const old = replies.start("hw", "s-old", "t1");
    const current = replies.start("hw", "s-new", "t2");
    expect(replies.interrupt("hw", "barge-in", "s-new")).toEqual(["s-old"]);
    expect(reason(old).why).toBe("barge-in");
    expect(current.controller.signal.aborted).toBe(false);
  });
});

describe("ReplyRegistry.finish", () => {
  it("removes only that reply, even when a newer one has the same session", () => {
    const replies = new ReplyRegistry(10);
    const first = replies.start("hw", "s", "t1");
    const second = replies.start("hw", "s", "t2");
    replies.finish(first);
    replies.finish(first);
    expect(first.controller.signal.aborted).toBe(false);
    expect(replies.interrupt("hw", "interrupted")).toEqual(["s"]);
    expect(second.controller.signal.aborted).toBe(true);
    replies.finish(second);
    expect(replies.interrupt("hw", "interrupted")).toEqual([]);
    replies.finish(second);
  });

  it("a finished reply is no longer interrupted or cancelled", () => {
    const replies = new ReplyRegistry(10);
    const done = replies.start("hw", "s", "t1");
    replies.finish(done);
    expect(replies.interrupt("hw", "interrupted")).toEqual([]);
    expect(replies.cancelSession("hw", "s")).toBe(false);
    expect(replies.abortAll()).toBe(0);
    expect(done.controller.signal.aborted).toBe(false);
  });
});

describe("ReplyRegistry.cancelSession and abortAll", () => {
  it("cancelSession aborts only that session's reply", () => {
    const replies = new ReplyRegistry(10);
    const a = replies.start("hw", "s-a", "t1");
    const b = replies.start("hw", "s-b", "t2");
    const sameIdElsewhere = replies.start("hw-2", "s-a", "t3");
    expect(replies.cancelSession("hw", "s-a")).toBe(true);
    expect(reason(a).why).toBe("cancelled");
    expect(b.controller.signal.aborted).toBe(false);
    expect(sameIdElsewhere.controller.signal.aborted).toBe(false);
    expect(replies.cancelSession("hw", "s-a")).toBe(false);
    expect(replies.cancelSession("hw", "unknown")).toBe(false);
    expect(replies.cancelSession("nobody", "s-a")).toBe(false);
  });

  it("abortAll aborts every running reply with shutdown", () => {
    const replies = new ReplyRegistry(10);
    const all = [
      replies.start("a", "1", "t1"),
      replies.start("a", "2", "t2"),
      replies.start("b", "1", "t3"),
    ];
    replies.cancelSession("a", "2");
    expect(replies.abortAll()).toBe(2);
    expect(all.map((r) => reason(r).why)).toEqual(["shutdown", "cancelled", "shutdown"]);
    expect(replies.abortAll()).toBe(0);
  });
});

describe("ReplyRegistry admission", () => {
  it("admit takes a slot; past the limit RESOURCE_EXHAUSTED naming max_concurrent_replies", () => {
    const replies = new ReplyRegistry(2);
    replies.admit();
    replies.admit();
    expect(replies.inFlight).toBe(2);
    let refused: unknown;
    try {
      replies.admit();
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(ConnectError);
    expect((refused as ConnectError).code).toBe(Code.ResourceExhausted);
    expect((refused as ConnectError).rawMessage).toMatch(/^max_concurrent_replies: /);
    expect(replies.inFlight).toBe(2);
    replies.release();
    expect(replies.inFlight).toBe(1);
    replies.admit();
    expect(replies.inFlight).toBe(2);
  });

  it("slots are independent of registered replies", () => {
    const replies = new ReplyRegistry(1);
    replies.start("hw", "s", "t");
    replies.admit();
    expect(() => replies.admit()).toThrow(/max_concurrent_replies/);
    const zero = new ReplyRegistry(0);
    expect(() => zero.admit()).toThrow(/max_concurrent_replies/);
  });
});
