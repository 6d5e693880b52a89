import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { resolveLimits } from "../../src/core/limits.js";
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

let sessions = 0;
const sid = () => `s-${++sessions}`;

describe("ReplyRegistry admission", () => {
  it("admit takes a slot; past the limit RESOURCE_EXHAUSTED naming max_concurrent_replies", () => {
    const replies = new ReplyRegistry(2);
    const release = replies.admit("hw-1", sid());
    replies.admit("hw-2", sid());
    expect(replies.inFlight).toBe(2);
    let refused: unknown;
    try {
      replies.admit("hw-3", sid());
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(ConnectError);
    expect((refused as ConnectError).code).toBe(Code.ResourceExhausted);
    expect((refused as ConnectError).rawMessage).toMatch(/^max_concurrent_replies: /);
    expect(replies.inFlight).toBe(2);
    release();
    // Releasing twice gives back one slot, not two.
    release();
    expect(replies.inFlight).toBe(1);
    replies.admit("hw-3", sid());
    expect(replies.inFlight).toBe(2);
  });

  it("slots are independent of registered replies", () => {
    const replies = new ReplyRegistry(1);
    replies.start("hw", "s", "t");
    replies.admit("hw", sid());
    expect(() => replies.admit("hw", sid())).toThrow(/max_concurrent_replies/);
    const zero = new ReplyRegistry(0);
    expect(() => zero.admit("hw", sid())).toThrow(/max_concurrent_replies/);
  });

  const fair = resolveLimits({ maxConcurrentReplies: 8, maxRepliesPerDevice: 2 });

  it("a device holds at most max_replies_per_device; other devices still get slots", () => {
    const replies = new ReplyRegistry(fair);
    const first = replies.admit("hw", sid());
    replies.admit("hw", sid());
    expect(() => replies.admit("hw", sid())).toThrow(/max_replies_per_device: /);
    replies.admit("hw-other", sid());
    first();
    replies.admit("hw", sid());
    expect(replies.inFlight).toBe(3);
  });

  it("a connection holds at most max_replies_per_connection (a quarter by default)", () => {
    expect(fair.maxRepliesPerConnection).toBe(2);
    const replies = new ReplyRegistry(fair);
    const conn = {};
    const release = replies.admit("hw-1", sid(), conn);
    replies.admit("hw-2", sid(), conn);
    expect(() => replies.admit("hw-3", sid(), conn)).toThrow(/max_replies_per_connection: /);
    // Another connection, and calls without a known connection, are not affected.
    replies.admit("hw-3", sid(), {});
    replies.admit("hw-4", sid());
    release();
    replies.admit("hw-5", sid(), conn);
    expect(replies.inFlight).toBe(4);
  });

  it("concurrent repeats of one COMMIT share one slot of the device's and connection's shares", () => {
    const replies = new ReplyRegistry(fair);
    const conn = {};
    // Five admissions for one session race (only one will take the turn; the store answers
    // the others ALREADY_EXISTS): none is refused a share the others hold.
    const repeats = [1, 2, 3, 4, 5].map(() => replies.admit("hw", "s-1", conn));
    expect(replies.inFlight).toBe(5);
    replies.admit("hw", "s-2", conn);
    expect(() => replies.admit("hw", "s-3", {})).toThrow(/max_replies_per_device/);
    expect(() => replies.admit("hw-2", "s-4", conn)).toThrow(/max_replies_per_connection/);
    for (const release of repeats) release();
    replies.admit("hw", "s-3", conn);
    expect(replies.inFlight).toBe(2);
  });

  it("the shares follow max_concurrent_replies and never pass it", () => {
    expect(resolveLimits({ maxConcurrentReplies: 2 })).toMatchObject({
      maxRepliesPerConnection: 1,
      maxRepliesPerDevice: 2,
    });
    expect(resolveLimits({}).maxRepliesPerConnection).toBe(64);
    expect(
      resolveLimits({ maxConcurrentReplies: 4, maxRepliesPerConnection: 100 })
        .maxRepliesPerConnection,
    ).toBe(4);
  });
});

describe("ReplyRegistry stall watch", () => {
  it("a reply parked past reply_stall_ms is reported once; one that moved on is not", async () => {
    const replies = new ReplyRegistry(resolveLimits({ replyStallMs: 40 }));
    const stuck = replies.start("hw", "s-1", "t-1");
    const moving = replies.start("hw", "s-2", "t-2");
    let stalled: string[] = [];
    replies.park(stuck, () => stalled.push("stuck"));
    replies.park(moving, () => stalled.push("moving"));
    replies.unpark(moving);
    await new Promise((r) => setTimeout(r, 150));
    expect(stalled).toEqual(["stuck"]);
    // A finished reply is no longer watched.
    stalled = [];
    replies.park(moving, () => stalled.push("moving"));
    replies.finish(moving);
    await new Promise((r) => setTimeout(r, 150));
    expect(stalled).toEqual([]);
  });
});
