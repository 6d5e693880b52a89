import { Code, ConnectError } from "@connectrpc/connect";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { canonicalHardwareId, canonicalSessionId } from "../../src/core/identifiers.js";

function refusal(fn: () => unknown): ConnectError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConnectError) return err;
    throw err;
  }
  throw new Error("expected an INVALID_ARGUMENT ConnectError");
}

const ALLOWED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:@-";
const SESSION_RULE = "session_id: must be a version-4 UUID (8-4-4-4-12 hex)";

describe("canonicalHardwareId", () => {
  it.each([
    ["a", "a"],
    ["dev-1", "dev-1"],
    ["A.b_c:d@e-f", "A.b_c:d@e-f"],
    ["  dev-1\t\n", "dev-1"],
    ["unknown-1", "unknown-1"],
    ["x".repeat(128), "x".repeat(128)],
    [` ${"x".repeat(128)} `, "x".repeat(128)],
  ])("%j -> %j", (raw, want) => {
    expect(canonicalHardwareId(raw)).toBe(want);
  });

  it.each([
    ["", "hardware_id: must not be empty"],
    [" \t ", "hardware_id: must not be empty"],
    ["x".repeat(129), "hardware_id: must be at most 128 characters"],
    ["dev 1", "hardware_id: may only contain letters, digits and . _ : @ -"],
    ["dév", "hardware_id: may only contain letters, digits and . _ : @ -"],
    ["dev/1", "hardware_id: may only contain letters, digits and . _ : @ -"],
    ["dev\n1", "hardware_id: may only contain letters, digits and . _ : @ -"],
    ["unknown", 'hardware_id: must identify the device; "unknown" is not allowed'],
    [" UnKnOwN ", 'hardware_id: must identify the device; "unknown" is not allowed'],
  ])("%j is refused: %s", (raw, message) => {
    const err = refusal(() => canonicalHardwareId(raw));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toBe(message);
  });

  it("never echoes an over-long value", () => {
    const raw = `${"secret".repeat(2000)}!`;
    const err = refusal(() => canonicalHardwareId(raw));
    expect(err.rawMessage).not.toContain("secret");
    expect(err.rawMessage.length).toBeLessThan(100);
  });

  it("accepts any 1..128 allowed characters unchanged (except unknown)", () => {
    const id = fc.string({ unit: fc.constantFrom(...ALLOWED), minLength: 1, maxLength: 128 });
    fc.assert(
      fc.property(id, (raw) => {
        fc.pre(raw.toLowerCase() !== "unknown");
        expect(canonicalHardwareId(raw)).toBe(raw);
      }),
    );
  });

  it("refuses any id with a character outside the set", () => {
    const bad = fc
      .string({ unit: "grapheme", minLength: 1, maxLength: 3 })
      .filter((s) => /[^A-Za-z0-9._:@-]/.test(s.trim()));
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(...ALLOWED), maxLength: 60 }), bad, (ok, b) => {
        expect(refusal(() => canonicalHardwareId(`${ok}${b}${ok}`)).code).toBe(
          Code.InvalidArgument,
        );
      }),
    );
  });
});

describe("canonicalSessionId", () => {
  it.each([
    ["0f8fad5b-d9cb-469f-a165-70867728950e", "0f8fad5b-d9cb-469f-a165-70867728950e"],
    ["0F8FAD5B-D9CB-469F-A165-70867728950E", "0f8fad5b-d9cb-469f-a165-70867728950e"],
    ["0f8FAD5b-d9cb-469f-B165-70867728950e", "0f8fad5b-d9cb-469f-b165-70867728950e"],
    ["00000000-0000-4000-8000-000000000000", "00000000-0000-4000-8000-000000000000"],
  ])("%j -> %j", (raw, want) => {
    expect(canonicalSessionId(raw)).toBe(want);
  });

  it.each([
    ["", "empty"],
    ["00000000-0000-0000-0000-000000000000", "nil UUID"],
    ["0f8fad5b-d9cb-169f-a165-70867728950e", "version 1"],
    ["0f8fad5b-d9cb-769f-a165-70867728950e", "version 7"],
    ["0f8fad5b-d9cb-469f-c165-70867728950e", "variant c"],
    ["0f8fad5b-d9cb-469f-7165-70867728950e", "variant 7"],
    ["0f8fad5bd9cb469fa16570867728950e", "no dashes"],
    ["{0f8fad5b-d9cb-469f-a165-70867728950e}", "braces"],
    [" 0f8fad5b-d9cb-469f-a165-70867728950e", "leading space"],
    ["0f8fad5b-d9cb-469f-a165-70867728950e ", "trailing space"],
    ["0f8fad5b-d9cb-469f-a165-70867728950", "one digit short"],
    ["0f8fad5b-d9cb-469f-a165-70867728950e0", "one digit long"],
    ["0f8fad5b-d9cb-469f-a165-70867728950g", "not hex"],
    ["0f8fad5bd-9cb-469f-a165-70867728950e", "dash misplaced"],
    ["urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e", "URN form"],
    ["x".repeat(10_000), "over-long"],
  ])("%j is refused (%s)", (raw) => {
    const err = refusal(() => canonicalSessionId(raw));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toBe(SESSION_RULE);
  });

  it("accepts every v4 UUID in any case; the canonical form is lower case", () => {
    const v4 = fc.uuid({ version: 4 });
    fc.assert(
      fc.property(fc.mixedCase(v4), (raw) => {
        expect(canonicalSessionId(raw)).toBe(raw.toLowerCase());
      }),
    );
    for (let i = 0; i < 100; i++) {
      const id = crypto.randomUUID();
      expect(canonicalSessionId(id.toUpperCase())).toBe(id);
    }
  });

  it("refuses every other UUID version", () => {
    fc.assert(
      fc.property(fc.uuid({ version: [1, 2, 3, 5, 6, 7, 8] }), (raw) => {
        expect(refusal(() => canonicalSessionId(raw)).rawMessage).toBe(SESSION_RULE);
      }),
    );
  });
});
