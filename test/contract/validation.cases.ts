import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { clientFor, collect, newDevice, newSession, RequestPhase, streamAudio } from "./calls.js";
import type { Target } from "./target.js";

/** docs/protocol.md §2: identity and validation. */
export function validationCases(target: () => Target): void {
  describe("identity and validation (§2)", () => {
    const badHardwareIds: [string, string][] = [
      ["", "must not be empty"],
      ["   ", "must not be empty"],
      ["unknown", '"unknown" is not allowed'],
      ["UnKnOwN", '"unknown" is not allowed'],
      ["dev 1", "may only contain"],
      ["dev/1", "may only contain"],
      ["x".repeat(129), "at most 128 characters"],
    ];
    for (const [id, rule] of badHardwareIds) {
      it(`rejects hardware_id ${JSON.stringify(id.slice(0, 12))} (${rule})`, async () => {
        const r = await streamAudio(clientFor(target()), collect(id, newSession(), 1, "hi"));
        expect(r.code).toBe(Code.InvalidArgument);
        expect(r.message).toContain("hardware_id");
        expect(r.message).toContain(rule);
        // Old clients read the reason from an error_message frame before the status.
        expect(r.frames).toEqual([{ case: "errorMessage", value: r.message }]);
      });
    }

    it("never echoes an over-long value", async () => {
      const long = `A${"b".repeat(5000)}`;
      const r = await streamAudio(clientFor(target()), collect(long, newSession(), 1, "hi"));
      expect(r.code).toBe(Code.InvalidArgument);
      expect(r.message).not.toContain("bbbbbbbbbb");
      const s = await streamAudio(clientFor(target()), collect(newDevice(), long, 1, "hi"));
      expect(s.code).toBe(Code.InvalidArgument);
      expect(s.message).not.toContain("bbbbbbbbbb");
    });

    for (const id of [
      "not-a-uuid",
      "6f1c1f5e-6c1b-1c1e-9a1e-1b2c3d4e5f60", // version 1
      "6f1c1f5e-6c1b-4c1e-7a1e-1b2c3d4e5f60", // wrong variant
      "6f1c1f5e6c1b4c1e9a1e1b2c3d4e5f60", // no dashes
      "{6f1c1f5e-6c1b-4c1e-9a1e-1b2c3d4e5f60}",
      "",
    ]) {
      it(`rejects session_id ${JSON.stringify(id)}`, async () => {
        const r = await streamAudio(clientFor(target()), collect(newDevice(), id, 1, "hi"));
        expect(r.code).toBe(Code.InvalidArgument);
        expect(r.message).toBe("session_id: must be a version-4 UUID (8-4-4-4-12 hex)");
      });
    }

    it("checks hardware_id before session_id", async () => {
      const r = await streamAudio(clientFor(target()), collect("unknown", "nope", 1, "hi"));
      expect(r.code).toBe(Code.InvalidArgument);
      expect(r.message).toMatch(/^hardware_id:/);
    });

    it("canonicalises: trimmed hardware_id, any-case session_id are the same session", async () => {
      const client = clientFor(target());
      const hw = newDevice();
      const sid = newSession();
      await streamAudio(client, collect(`  ${hw}\t`, sid.toUpperCase(), 1, "one "));
      const dup = await streamAudio(client, collect(hw, sid, 1, "one "));
      expect(dup.trailers.get("ptt-collect")).toBe("duplicate");
      await streamAudio(client, collect(hw, sid, 2, "two"));
      const r = await streamAudio(client, {
        hardwareId: hw,
        sessionId: sid.toUpperCase(),
        phase: RequestPhase.COMMIT,
      });
      expect(r.code).toBeUndefined();
      expect(
        r.frames
          .filter((f) => f.case === "textChunk")
          .map((f) => f.value)
          .join(""),
      ).toBe("one two");
    });

    it("keeps the same session_id under two hardware ids apart", async () => {
      const client = clientFor(target());
      const sid = newSession();
      const a = newDevice();
      const b = newDevice();
      await streamAudio(client, collect(a, sid, 1, "from a"));
      await streamAudio(client, collect(b, sid, 1, "from b"));
      const ra = await streamAudio(client, {
        hardwareId: a,
        sessionId: sid,
        phase: RequestPhase.COMMIT,
      });
      const rb = await streamAudio(client, {
        hardwareId: b,
        sessionId: sid,
        phase: RequestPhase.COMMIT,
      });
      expect(ra.frames[0]).toEqual({ case: "textChunk", value: "from a" });
      expect(rb.frames[0]).toEqual({ case: "textChunk", value: "from b" });
    });

    it("rejects a negative chunk_seq", async () => {
      const r = await streamAudio(clientFor(target()), collect(newDevice(), newSession(), -1, "x"));
      expect(r.code).toBe(Code.InvalidArgument);
      expect(r.message).toMatch(/^chunk_seq: .*-1/);
    });

    it("rejects an unknown phase, naming the number", async () => {
      const r = await streamAudio(clientFor(target()), {
        hardwareId: newDevice(),
        sessionId: newSession(),
        phase: 7 as RequestPhase,
        chunkText: "x",
      });
      expect(r.code).toBe(Code.InvalidArgument);
      expect(r.message).toBe("phase: unknown value 7");
    });

    it("answers UNIMPLEMENTED for the declared but unserved methods", async () => {
      const client = clientFor(target());
      await expect(client.reportUsage({ hardwareId: "dev" })).rejects.toMatchObject({
        code: Code.Unimplemented,
      });
      const welcome = async () => {
        for await (const _ of client.generateWelcomeAudio({ text: "hi" })) {
          // drain
        }
      };
      await expect(welcome()).rejects.toMatchObject({ code: Code.Unimplemented });
    });
  });
}
