import { describe, expect, it } from "vitest";
import { groupSentences, SentenceGrouper } from "../../src/core/voice/sentence-grouper.js";

async function* tokens(list: string[]) {
  yield* list;
}

async function grouped(list: string[], grouper?: SentenceGrouper) {
  const out: string[] = [];
  for await (const piece of groupSentences(tokens(list), grouper)) out.push(piece);
  return out;
}

describe("SentenceGrouper", () => {
  it("sends the first sentence as soon as the next token shows it ended", () => {
    const g = new SentenceGrouper(40);
    expect(g.push("Hello")).toEqual([]);
    expect(g.push(" there.")).toEqual([]); // "." at the end may still become "..." or "3.14"
    expect(g.push(" How")).toEqual(["Hello there. "]);
  });

  it("sends a sentence whose terminator is followed by whitespace at once", () => {
    const g = new SentenceGrouper(40);
    expect(g.push("Yes! ")).toEqual(["Yes! "]);
  });

  it("groups later sentences up to the minimum length, and flushes the rest", async () => {
    const list = ["Hi. ", "One. ", "Two. ", "Three is longer. ", "Four."];
    expect(await grouped(list, new SentenceGrouper(20))).toEqual([
      "Hi. ",
      "One. Two. Three is longer. ",
      "Four.",
    ]);
  });

  it("keeps decimals, versions and ellipses inside a sentence, whatever the token cuts", async () => {
    const text = "Pi is 3.14 today. Version 2.0.1 works... mostly. Done?! Yes.";
    for (let size = 1; size <= 7; size++) {
      const list: string[] = [];
      for (let i = 0; i < text.length; i += size) list.push(text.slice(i, i + size));
      const out = await grouped(list, new SentenceGrouper(1));
      expect(out.join("")).toBe(text);
      expect(out).toEqual([
        "Pi is 3.14 today. ",
        "Version 2.0.1 works... ",
        "mostly. ",
        "Done?! ",
        "Yes.",
      ]);
    }
  });

  it("splits CJK sentences without whitespace", async () => {
    expect(await grouped(["你好", "。今天", "很好。"], new SentenceGrouper(1))).toEqual([
      "你好。",
      "今天很好。",
    ]);
  });

  it("keeps closing quotes with their sentence", async () => {
    expect(await grouped(['He said "stop."', " Then", " left."], new SentenceGrouper(1))).toEqual([
      'He said "stop." ',
      "Then left.",
    ]);
  });

  it("cuts a run without any sentence end at a space past the maximum length", async () => {
    const words = Array.from({ length: 200 }, (_, i) => `w${i} `);
    const out = await grouped(words, new SentenceGrouper(10, 50));
    expect(out.join("")).toBe(words.join(""));
    expect(out.length).toBeGreaterThan(10);
    for (const piece of out.slice(0, -1)) expect(piece.length).toBeLessThanOrEqual(60);
  });

  it("concatenates to exactly the streamed text", async () => {
    const list = ["  lead", "ing.  ", "\n", "Odd   spacing ?", "!  ", "end"];
    expect((await grouped(list)).join("")).toBe(list.join(""));
  });
});
