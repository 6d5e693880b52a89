// FastHeaders (src/core/fast-headers.ts) against the platform's Headers: after any sequence of
// set, append and delete, both iterate the same pairs in the same order (forEach too, which
// skips building a sorted list while names were set in order), and get the same values.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FastHeaders } from "../../src/core/fast-headers.js";

type Op = { op: "set" | "append" | "delete"; name: string; value: string };

const name = fc.constantFrom(
  "grpc-status",
  "ptt-collect",
  "ptt-last-seq",
  "PTT-Collect",
  "a",
  "z",
  "set-cookie",
  "Set-Cookie",
);
const op: fc.Arbitrary<Op> = fc.record({
  op: fc.constantFrom("set", "append", "delete"),
  name,
  value: fc.constantFrom("1", " x ", "accepted", "v=1", ""),
});

function apply(h: Headers, ops: Op[]): void {
  for (const { op, name, value } of ops) {
    if (op === "delete") h.delete(name);
    else h[op](name, value);
  }
}

function forEachPairs(h: Headers): [string, string][] {
  const out: [string, string][] = [];
  h.forEach((value, key) => {
    out.push([key, value]);
  });
  return out;
}

describe("FastHeaders", () => {
  it("iterates and reads like Headers after any edits", () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 12 }), (ops) => {
        const fast = new FastHeaders();
        const platform = new Headers();
        apply(fast, ops);
        apply(platform, ops);
        expect(forEachPairs(fast)).toEqual(forEachPairs(platform));
        expect([...fast]).toEqual([...platform]);
        for (const n of ["grpc-status", "ptt-collect", "a", "z", "set-cookie"]) {
          expect(fast.get(n)).toBe(platform.get(n));
        }
      }),
      { numRuns: 2000 },
    );
  });

  it("forEach goes in name order when names were set out of order", () => {
    const h = new FastHeaders();
    h.set("ptt-last-seq", "3");
    h.set("ptt-collect", "accepted");
    h.set("grpc-status", "0");
    expect(forEachPairs(h).map(([k]) => k)).toEqual(["grpc-status", "ptt-collect", "ptt-last-seq"]);
  });
});
