import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { ReplyPart } from "../../src/core/ports.js";
import type { CommittedTurn } from "../../src/core/session.js";
import { createEchoWorkflow, splitSentences } from "../../src/core/workflows/echo.js";
import { ManualClock } from "../support/manual-clock.js";

/** Any code point (fc's "binary" unit does the same but is oddly slow under vitest). */
const codePoint = fc.integer({ min: 0, max: 0x10ffff }).map((c) => String.fromCodePoint(c));

/** Strings rich in what the splitter looks at: terminators, quotes, whitespace, digits. */
const sentencey = fc.string({
  unit: fc.constantFrom(
    ...[".", "!", "?", "…", "。", "！", "？", '"', "'", "”", "’", ")", "]", " ", "\n", "\t"],
    ...["a", "Z", "3", "é", "你", "😀", "\u00a0", "\u2028", "\ud800"],
  ),
  maxLength: 60,
});

describe("splitSentences", () => {
  it("pieces concatenate to exactly the input, and none is empty", () => {
    const anyString = fc.oneof(
      sentencey,
      fc.string({ unit: "grapheme" }),
      fc.string({ unit: codePoint }),
    );
    fc.assert(
      fc.property(anyString, (s) => {
        const pieces = splitSentences(s);
        expect(pieces.join("")).toBe(s);
        expect(pieces.every((p) => p.length > 0)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it.each([
    ["", []],
    ["   ", ["   "]],
    ["no terminator", ["no terminator"]],
    ["Hello there. How are you? Fine!", ["Hello there. ", "How are you? ", "Fine!"]],
    ["Pi is 3.14 today.", ["Pi is 3.14 today."]],
    ["Wait... what?!  Really.\n", ["Wait... ", "what?!  ", "Really.\n"]],
    ['He said "hi." Then left.', ['He said "hi." ', "Then left."]],
    ["(Really.) Yes.", ["(Really.) ", "Yes."]],
    ["Trailing text. ", ["Trailing text. "]],
    ["Hm… ok.", ["Hm… ", "ok."]],
    ["Hallo. 😀 Tschüss!", ["Hallo. ", "😀 Tschüss!"]],
  ])("%j -> %j", (s, want) => {
    expect(splitSentences(s)).toEqual(want);
  });

  // Regression (was a bug): CJK full stops are in the terminator set but a split also needs
  // whitespace after them, and CJK text puts none, so Chinese/Japanese never splits.
  it("splits CJK text after 。！？, which take no space after them", () => {
    expect(splitSentences("你好。世界！再见？")).toEqual(["你好。", "世界！", "再见？"]);
  });

  // Regression (was a bug): the lazy scan backtracks over each run of terminators at every start
  // position: a run of N terminators not followed by whitespace costs O(N²)
  // (64 KiB of "." + "x", within max_session_text_bytes, blocks the event loop ~9 s).
  it("runs in linear time on long runs of terminators", () => {
    const s = `${".".repeat(16_384)}x`;
    const started = performance.now();
    const pieces = splitSentences(s);
    const ms = performance.now() - started;
    expect(pieces.join("")).toBe(s);
    expect(ms).toBeLessThan(100);
  });
});

describe("echo workflow", () => {
  const turn = (text: string): CommittedTurn => ({
    turnId: "t1",
    hardwareId: "dev-1",
    sessionId: "0f8fad5b-d9cb-469f-a165-70867728950e",
    text,
    audio: [],
    chunks: 1,
    heldMs: 0,
  });

  async function collect(parts: AsyncIterable<ReplyPart>): Promise<ReplyPart[]> {
    const out: ReplyPart[] = [];
    for await (const p of parts) out.push(p);
    return out;
  }

  it("streams one text part per sentence, concatenating to the committed text", async () => {
    const echo = createEchoWorkflow({ clock: new ManualClock() });
    const parts = await collect(echo(turn("One. Two? Three"), new AbortController().signal));
    expect(parts).toEqual([
      { kind: "text", text: "One. " },
      { kind: "text", text: "Two? " },
      { kind: "text", text: "Three" },
    ]);
    expect(await collect(echo(turn(""), new AbortController().signal))).toEqual([]);
  });

  it("paces sentences with the clock and stops at once when aborted", async () => {
    const clock = new ManualClock();
    const echo = createEchoWorkflow({ clock, delayMs: 1000 });
    const controller = new AbortController();
    const it = echo(turn("One. Two. Three."), controller.signal)[Symbol.asyncIterator]();
    expect(await it.next()).toEqual({ done: false, value: { kind: "text", text: "One. " } });
    const second = it.next();
    await Promise.resolve();
    expect(clock.pendingTimers).toBe(1);
    clock.tick(1000);
    expect(await second).toEqual({ done: false, value: { kind: "text", text: "Two. " } });
    const third = it.next();
    await Promise.resolve();
    const reason = new Error("stop");
    controller.abort(reason);
    await expect(third).rejects.toBe(reason);
    expect(clock.pendingTimers).toBe(0);
  });

  it("does not start when the signal is already aborted", async () => {
    const echo = createEchoWorkflow({ clock: new ManualClock() });
    const controller = new AbortController();
    controller.abort(new Error("gone"));
    await expect(collect(echo(turn("Hi."), controller.signal))).rejects.toThrow("gone");
  });
});
