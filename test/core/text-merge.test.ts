import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { mergeUnspecified, normalise, utf8Length } from "../../src/core/text-merge.js";

const mergeAll = (chunks: string[], start = "") => chunks.reduce(mergeUnspecified, start);

describe("mergeUnspecified: docs/protocol.md §3 examples", () => {
  it.each([
    [["hello ", "world"], "hello world"],
    [["call ", "mom ", "and ", "a", "sk her"], "call mom and ask her"],
    [
      ["what is the whether", "what is the weather in", "What is the weather in Paris?"],
      "What is the weather in Paris?",
    ],
    // Buffer + the COMMIT's prompt, which counts as one more chunk.
    [["can you", " help me"], "can you help me"],
    [["hey what's up", "Hey, what's up?"], "Hey, what's up?"],
  ])("%j -> %j", (chunks, want) => {
    expect(mergeAll(chunks)).toBe(want);
  });

  // The "seq 2 newer, then seq 1 older" example is about seq order, not merging:
  // see collect outcomes in test/contract/store.ts.
});

describe("mergeUnspecified: rules", () => {
  it("a chunk that is a substring of the text so far is appended, never dropped", () => {
    expect(mergeUnspecified("hello world", "world")).toBe("hello worldworld");
    expect(mergeUnspecified("say yes", "yes")).toBe("say yesyes");
  });

  it("a shared normalised prefix covering half of the buffer makes a revision", () => {
    // "abcd" vs "ab": 2 of 4 = half: replaced.
    expect(mergeUnspecified("ab cd", "AB!")).toBe("AB!");
    // 1 of 4: less than half: appended.
    expect(mergeUnspecified("ab cd", "a")).toBe("ab cda");
  });

  it("empty sides and punctuation-only buffers", () => {
    expect(mergeUnspecified("", "first")).toBe("first");
    expect(mergeUnspecified("kept", "")).toBe("kept");
    expect(mergeUnspecified("...", "hi")).toBe("...hi");
    expect(mergeUnspecified("?!", "?!")).toBe("?!?!");
  });

  it("works on any script", () => {
    expect(mergeAll(["Привет ", "мир"])).toBe("Привет мир");
    expect(mergeAll(["Привет ми", "ПРИВЕТ, МИР!"])).toBe("ПРИВЕТ, МИР!");
    expect(mergeAll(["你好", "世界"])).toBe("你好世界");
    expect(mergeAll(["你好世", "你好，世界。"])).toBe("你好，世界。");
  });

  it("the result is the chunk (a revision) or buffer + chunk (a delta); the chunk is never lost", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }), fc.string({ unit: "grapheme" }), (a, b) => {
        const merged = mergeUnspecified(a, b);
        expect([b, a + b]).toContain(merged);
        expect(merged.endsWith(b)).toBe(true);
        if (a.length === 0) expect(merged).toBe(b);
        if (b.length === 0) expect(merged).toBe(a);
      }),
    );
  });

  it("a chunk that extends the buffer (same normalised start) replaces it", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", minLength: 1 }), fc.string(), (a, tail) => {
        fc.pre(normalise(a).length > 0);
        expect(mergeUnspecified(a, a + tail)).toBe(a + tail);
      }),
    );
  });
});

describe("normalise", () => {
  it("keeps letters and digits of any script, in lower case", () => {
    expect(normalise("Hey, what's up?")).toBe("heywhatsup");
    expect(normalise("Привет, МИР!")).toBe("приветмир");
    expect(normalise("Γειά σου Κόσμε")).toBe("γειάσουκόσμε");
    expect(normalise("你好，世界！")).toBe("你好世界");
    expect(normalise("こんにちは。カタカナ")).toBe("こんにちはカタカナ");
    expect(normalise("مرحبا بالعالم ٣٤٥")).toBe("مرحبابالعالم٣٤٥");
    expect(normalise("שָׁלוֹם")).not.toBe("");
    expect(normalise("Straße 12")).toBe("straße12");
    expect(normalise("  \t\n...!?—«»")).toBe("");
  });

  it("is idempotent and never longer than its input", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }), (s) => {
        const n = normalise(s);
        expect(normalise(n)).toBe(n);
        expect(n.length).toBeLessThanOrEqual(s.toLowerCase().length);
      }),
    );
  });
});

describe("utf8Length", () => {
  const encoder = new TextEncoder();
  const bytes = (s: string) => encoder.encode(s).length;

  it.each([
    ["", 0],
    ["a", 1],
    ["é", 2],
    ["€", 3],
    ["你", 3],
    ["😀", 4],
    ["👩‍👩‍👧", 18],
    ["\ud800", 3], // lone high surrogate: encoded as U+FFFD
    ["\udc00", 3], // lone low surrogate
    ["a\ud83d", 4], // high surrogate at the end
    ["\ude00\ud83d", 6], // a pair in the wrong order is two lone surrogates
  ])("%j is %i bytes", (s, n) => {
    expect(utf8Length(s)).toBe(n);
    expect(utf8Length(s)).toBe(bytes(s));
  });

  it("agrees with TextEncoder on any string, including lone surrogates", () => {
    // Any code point (fc's "binary" unit does the same but is oddly slow under vitest).
    const codePoint = fc.integer({ min: 0, max: 0x10ffff }).map((c) => String.fromCodePoint(c));
    const utf16 = fc
      .array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 40 })
      .map((units) => String.fromCharCode(...units));
    const anything = fc.oneof(
      fc.string({ unit: codePoint }),
      fc.string({ unit: "grapheme" }),
      utf16,
    );
    fc.assert(
      fc.property(fc.array(anything, { maxLength: 4 }), (parts) => {
        const s = parts.join("");
        expect(utf8Length(s)).toBe(bytes(s));
      }),
      { numRuns: 300 },
    );
  });
});
