import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import {
  cancel,
  clientFor,
  collect,
  commit,
  endMessage,
  newDevice,
  newSession,
  RequestPhase,
  replyText,
  streamAudio,
} from "./calls.js";
import type { Capabilities, Target } from "./target.js";

/** docs/protocol.md §3 COMMIT and CANCEL, §4 reply stream. */
export function commitCases(caps: Capabilities, target: () => Target): void {
  describe("COMMIT and the reply stream (§3, §4)", () => {
    it("streams the committed text back, then one end_message, with turn id and timing", async () => {
      const client = clientFor(target());
      const hw = newDevice();
      const sid = newSession();
      await streamAudio(client, collect(hw, sid, 1, "Hello there. "));
      await streamAudio(client, collect(hw, sid, 2, "How are you? Fine!"));
      const r = await streamAudio(client, commit(hw, sid));
      expect(r.code).toBeUndefined();
      expect(replyText(r)).toBe("Hello there. How are you? Fine!");
      // One chunk per sentence; the voice workflow groups the later ones ("Hello there. ", the rest).
      expect(r.frames.filter((f) => f.case === "textChunk").length).toBe(
        caps.groupedSentences ? 2 : 3,
      );
      expect(r.frames.filter((f) => f.case === "endMessage")).toEqual([
        { case: "endMessage", value: "RESPONSE_COMPLETED" },
      ]);
      expect(endMessage(r)).toBe("RESPONSE_COMPLETED");
      const headers = caps.headersWithTrailers ? r.trailers : r.headers;
      expect(headers.get("ptt-turn-id")).toMatch(/^[0-9a-f-]{36}$/);
      expect(r.trailers.get("ptt-commit-ms")).toMatch(/^\d+(\.\d+)?$/);
    });

    it("treats phase UNSPECIFIED (0) as COMMIT: one-shot old clients", async () => {
      const r = await streamAudio(clientFor(target()), {
        hardwareId: newDevice(),
        sessionId: newSession(),
        phase: RequestPhase.UNSPECIFIED,
        prompt: "just a prompt",
      });
      expect(r.code).toBeUndefined();
      expect(replyText(r)).toBe("just a prompt");
    });

    it("uses the COMMIT's chunk_text, then its prompt", async () => {
      const client = clientFor(target());
      const hw = newDevice();
      const sid = newSession();
      await streamAudio(client, collect(hw, sid, 1, "alpha "));
      const r = await streamAudio(client, commit(hw, sid, { chunkText: "beta ", prompt: "gamma" }));
      expect(replyText(r)).toBe("alpha beta gamma");
    });

    it("concurrent COMMITs of one session (100): exactly one reply, the rest ALREADY_EXISTS", async () => {
      const t = target();
      const client = clientFor(t);
      const hw = newDevice();
      const sid = newSession();
      await streamAudio(client, collect(hw, sid, 1, "only once"));
      // Each COMMIT takes a reply slot before the store is asked (one over the slots is
      // RESOURCE_EXHAUSTED with its buffer left for the retry: limits case): 100, or as many as
      // a run with fewer slots has.
      const n = Math.min(100, t.limits.maxConcurrentReplies);
      const results = await Promise.all(
        Array.from({ length: n }, () => streamAudio(client, commit(hw, sid))),
      );
      const ok = results.filter((r) => r.code === undefined);
      const dup = results.filter((r) => r.code === Code.AlreadyExists);
      const outcomes = results.map((r) => `${r.code ?? "ok"} ${r.message.slice(0, 60)}`);
      expect(ok.length, outcomes.join("\n")).toBe(1);
      expect(dup.length, outcomes.filter((o) => !o.startsWith("6 ")).join("\n")).toBe(n - 1);
      expect(replyText(ok[0] as (typeof ok)[0])).toBe("only once");
      for (const r of dup) {
        expect(r.message).toBe(`session ${sid} is already committed`);
        expect(r.frames).toEqual([{ case: "errorMessage", value: r.message }]);
      }
    }, 30_000);

    it("nothing to commit: INVALID_ARGUMENT and the session stays open", async () => {
      const client = clientFor(target());
      const hw = newDevice();
      const sid = newSession();
      const empty = await streamAudio(client, commit(hw, sid));
      expect(empty.code).toBe(Code.InvalidArgument);
      expect(empty.message).toContain("nothing to commit");
      const later = await streamAudio(client, collect(hw, sid, 1, "now something"));
      expect(later.code).toBeUndefined();
      expect(replyText(await streamAudio(client, commit(hw, sid)))).toBe("now something");
    });

    it("COMMIT of a cancelled session: FAILED_PRECONDITION, no reply", async () => {
      const client = clientFor(target());
      const hw = newDevice();
      const sid = newSession();
      await streamAudio(client, collect(hw, sid, 1, "never mind"));
      await streamAudio(client, cancel(hw, sid));
      const r = await streamAudio(client, commit(hw, sid, { prompt: "again" }));
      expect(r.code).toBe(Code.FailedPrecondition);
      expect(r.message).toBe(`session ${sid} was cancelled; nothing was committed`);
      expect(r.frames).toEqual([{ case: "errorMessage", value: r.message }]);
    });

    it("CANCEL of an unknown session is OK; CANCEL is idempotent", async () => {
      const client = clientFor(target());
      const hw = newDevice();
      const sid = newSession();
      for (let i = 0; i < 2; i++) {
        const r = await streamAudio(client, cancel(hw, sid));
        expect(r.code).toBeUndefined();
        expect(r.frames).toEqual([{ case: "endMessage", value: "CANCEL_ACCEPTED" }]);
      }
    });

    it("CANCEL stops the session's running reply: it ends CANCELLED, without end_message", async () => {
      const t = target();
      const client = clientFor(t);
      const hw = newDevice();
      const sid = newSession();
      let cancelled = false;
      const reply = streamAudio(client, commit(hw, sid, { prompt: longText(200) }), {
        onFrame: (f) => {
          if (!cancelled && f.case === "textChunk") {
            cancelled = true;
            void streamAudio(client, cancel(hw, sid));
          }
        },
      });
      const r = await reply;
      expect(r.code).toBe(Code.Canceled);
      expect(endMessage(r)).toBeUndefined();
      expect(r.ms).toBeLessThan(200 * t.echoDelayMs);
    });
  });
}

/**
 * n tiny sentences (3 bytes each, so 300 fit the test servers' 1 KiB chunk limit):
 * the echo workflow pauses between them, so the reply takes n x echoDelayMs.
 */
export function longText(n: number): string {
  return "a. ".repeat(n).trimEnd();
}
