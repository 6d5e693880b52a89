import { Code } from "@connectrpc/connect";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type CallResult,
  ChunkMode,
  cancel,
  clientFor,
  collect,
  commit,
  endMessage,
  newDevice,
  newSession,
  type Req,
  replyText,
  streamAudio,
} from "./calls.js";
import type { Target } from "./target.js";

/** Collects `texts` as seq 1..n (UNSPECIFIED unless `mode`), commits with `prompt`; returns the reply. */
async function holdAndCommit(
  target: Target,
  texts: string[],
  prompt = "",
  mode = ChunkMode.UNSPECIFIED,
): Promise<CallResult> {
  const client = clientFor(target);
  const hw = newDevice();
  const sid = newSession();
  for (const [i, text] of texts.entries()) {
    const r = await streamAudio(client, collect(hw, sid, i + 1, text, { chunkMode: mode }));
    expect(r.code).toBeUndefined();
  }
  return streamAudio(client, commit(hw, sid, { prompt, chunkMode: mode }));
}

/** docs/protocol.md §3 COLLECT: acks, trailers, merge rules. */
export function collectCases(target: () => Target): void {
  describe("COLLECT (§3)", () => {
    it("acks with exactly one COLLECT_ACCEPTED frame and trailers", async () => {
      const r = await streamAudio(clientFor(target()), collect(newDevice(), newSession(), 3, "hi"));
      expect(r.code).toBeUndefined();
      expect(r.frames).toEqual([{ case: "endMessage", value: "COLLECT_ACCEPTED" }]);
      expect(r.trailers.get("ptt-collect")).toBe("accepted");
      expect(r.trailers.get("ptt-last-seq")).toBe("3");
    });

    it("reports duplicate and stale chunks in the trailers, acked", async () => {
      const client = clientFor(target());
      const hw = newDevice();
      const sid = newSession();
      await streamAudio(client, collect(hw, sid, 2, "newer text"));
      const dup = await streamAudio(client, collect(hw, sid, 2, "newer text"));
      expect(dup.frames).toEqual([{ case: "endMessage", value: "COLLECT_ACCEPTED" }]);
      expect(dup.trailers.get("ptt-collect")).toBe("duplicate");
      const stale = await streamAudio(client, collect(hw, sid, 1, "older text"));
      expect(stale.trailers.get("ptt-collect")).toBe("stale");
      expect(stale.trailers.get("ptt-last-seq")).toBe("2");
      const r = await streamAudio(client, commit(hw, sid));
      expect(replyText(r)).toBe("newer text");
    });

    it("accepts unsequenced chunks (seq 0) in arrival order, every time", async () => {
      const client = clientFor(target());
      const hw = newDevice();
      const sid = newSession();
      for (const t of ["a ", "a ", "b"]) {
        const r = await streamAudio(client, collect(hw, sid, 0, t, { chunkMode: ChunkMode.DELTA }));
        expect(r.trailers.get("ptt-collect")).toBe("accepted");
        expect(r.trailers.get("ptt-last-seq")).toBe("0");
      }
      expect(replyText(await streamAudio(client, commit(hw, sid)))).toBe("a a b");
    });

    const examples: [string, string[], string, string][] = [
      ["deltas", ["hello ", "world"], "", "hello world"],
      ["split words", ["call ", "mom ", "and ", "a", "sk her"], "", "call mom and ask her"],
      [
        "revised snapshots",
        ["what is the whether", "what is the weather in", "What is the weather in Paris?"],
        "",
        "What is the weather in Paris?",
      ],
      ["a COMMIT prompt that continues", ["can you"], " help me", "can you help me"],
      ["a COMMIT prompt that revises", ["hey what's up"], "Hey, what's up?", "Hey, what's up?"],
      ["a repeated word is not dropped", ["I said no", " no"], "", "I said no no"],
    ];
    for (const [name, chunks, prompt, expected] of examples) {
      it(`merges old-client chunks: ${name}`, async () => {
        const r = await holdAndCommit(target(), chunks, prompt);
        expect(r.code).toBeUndefined();
        expect(replyText(r)).toBe(expected);
        expect(endMessage(r)).toBe("RESPONSE_COMPLETED");
      });
    }

    it("drops an older seq arriving after a newer one (old clients)", async () => {
      const client = clientFor(target());
      const hw = newDevice();
      const sid = newSession();
      await streamAudio(client, collect(hw, sid, 2, "newer text"));
      await streamAudio(client, collect(hw, sid, 1, "older text"));
      expect(replyText(await streamAudio(client, commit(hw, sid)))).toBe("newer text");
    });

    it("SNAPSHOT: the highest seq wins whatever the arrival order", async () => {
      const client = clientFor(target());
      const hw = newDevice();
      const sid = newSession();
      const mode = ChunkMode.SNAPSHOT;
      await streamAudio(client, collect(hw, sid, 3, "three words here", { chunkMode: mode }));
      const old = await streamAudio(
        client,
        collect(hw, sid, 2, "three words", { chunkMode: mode }),
      );
      expect(old.trailers.get("ptt-collect")).toBe("stale");
      expect(replyText(await streamAudio(client, commit(hw, sid)))).toBe("three words here");
    });

    it("DELTA: a late older seq is inserted in its place", async () => {
      const client = clientFor(target());
      const hw = newDevice();
      const sid = newSession();
      const mode = ChunkMode.DELTA;
      await streamAudio(client, collect(hw, sid, 1, "one ", { chunkMode: mode }));
      await streamAudio(client, collect(hw, sid, 3, "three", { chunkMode: mode }));
      const late = await streamAudio(client, collect(hw, sid, 2, "two ", { chunkMode: mode }));
      expect(late.trailers.get("ptt-collect")).toBe("accepted");
      expect(late.trailers.get("ptt-last-seq")).toBe("3");
      expect(replyText(await streamAudio(client, commit(hw, sid)))).toBe("one two three");
    });

    it("refuses to switch a session's chunk mode", async () => {
      const client = clientFor(target());
      const hw = newDevice();
      const sid = newSession();
      await streamAudio(client, collect(hw, sid, 1, "a", { chunkMode: ChunkMode.DELTA }));
      const r = await streamAudio(
        client,
        collect(hw, sid, 2, "b", { chunkMode: ChunkMode.SNAPSHOT }),
      );
      expect(r.code).toBe(Code.InvalidArgument);
      expect(r.message).toMatch(/^chunk_mode: /);
      expect(replyText(await streamAudio(client, commit(hw, sid)))).toBe("a");
    });

    for (const mode of [ChunkMode.SNAPSHOT, ChunkMode.DELTA]) {
      it(`${ChunkMode[mode]}: any permutation and duplication commits the same text (property)`, async () => {
        const words = fc.array(fc.stringMatching(/^[a-z]{1,6} $/), { minLength: 1, maxLength: 6 });
        const plan = words.chain((ws) =>
          fc.record({
            words: fc.constant(ws),
            // Each seq at least once, some twice, in any order.
            order: fc
              .array(fc.integer({ min: 0, max: ws.length - 1 }), { maxLength: ws.length })
              .chain((extra) =>
                fc.shuffledSubarray([...ws.keys(), ...extra], {
                  minLength: ws.length + extra.length,
                }),
              ),
          }),
        );
        await fc.assert(
          fc.asyncProperty(plan, async ({ words: ws, order }) => {
            const texts = ws.map((_, i) =>
              mode === ChunkMode.SNAPSHOT ? ws.slice(0, i + 1).join("") : ws[i],
            );
            const expected = mode === ChunkMode.SNAPSHOT ? (texts.at(-1) as string) : ws.join("");
            const client = clientFor(target());
            const hw = newDevice();
            const sid = newSession();
            for (const i of order) {
              const r = await streamAudio(
                client,
                collect(hw, sid, i + 1, texts[i], { chunkMode: mode }),
              );
              if (r.code !== undefined) return false;
            }
            const r = await streamAudio(client, commit(hw, sid, { chunkMode: mode }));
            expect(replyText(r)).toBe(expected);
            return true;
          }),
          { numRuns: 25 },
        );
        // Up to 25 x 13 calls in a row: seconds over a spawned runtime on a loaded machine.
      }, 60_000);
    }

    it("COLLECT after COMMIT: FAILED_PRECONDITION, nothing stored", async () => {
      const client = clientFor(target());
      const hw = newDevice();
      const sid = newSession();
      await streamAudio(client, collect(hw, sid, 1, "done"));
      await streamAudio(client, commit(hw, sid));
      const r = await streamAudio(client, collect(hw, sid, 2, "late"));
      expect(r.code).toBe(Code.FailedPrecondition);
      expect(r.message).toBe(`session ${sid} is already committed; chunk 2 was not added`);
      expect(r.frames).toEqual([{ case: "errorMessage", value: r.message }]);
    });

    it("COLLECT after CANCEL: FAILED_PRECONDITION (a cancelled hold never leaks)", async () => {
      const client = clientFor(target());
      const hw = newDevice();
      const sid = newSession();
      await streamAudio(client, collect(hw, sid, 1, "secret"));
      const c = await streamAudio(client, cancel(hw, sid));
      expect(c.frames).toEqual([{ case: "endMessage", value: "CANCEL_ACCEPTED" }]);
      const r = await streamAudio(client, collect(hw, sid, 2, "more"));
      expect(r.code).toBe(Code.FailedPrecondition);
      expect(r.message).toBe(`session ${sid} is already cancelled; chunk 2 was not added`);
    });

    it("a CANCEL that overtakes its chunks still wins", async () => {
      const client = clientFor(target());
      const hw = newDevice();
      const sid = newSession();
      expect((await streamAudio(client, cancel(hw, sid))).code).toBeUndefined();
      const r = await streamAudio(client, collect(hw, sid, 1, "late chunk"));
      expect(r.code).toBe(Code.FailedPrecondition);
    });

    it("chunks of one session never touch another", async () => {
      const client = clientFor(target());
      const hw = newDevice();
      const [s1, s2] = [newSession(), newSession()];
      // Sent at once, so they may arrive in any order: DELTA makes the outcome order-free.
      const delta = { chunkMode: ChunkMode.DELTA };
      await Promise.all([
        streamAudio(client, collect(hw, s1, 1, "first ", delta)),
        streamAudio(client, collect(hw, s2, 1, "second ", delta)),
        streamAudio(client, collect(hw, s1, 2, "one", delta)),
        streamAudio(client, collect(hw, s2, 2, "two", delta)),
      ] satisfies Promise<CallResult>[]);
      expect(replyText(await streamAudio(client, commit(hw, s1)))).toBe("first one");
      expect(replyText(await streamAudio(client, commit(hw, s2)))).toBe("second two");
    });

    it("appends chunk_audio in seq order and commits an audio-only hold", async () => {
      const client = clientFor(target());
      const hw = newDevice();
      const sid = newSession();
      const audio = (b: number): Req["chunkAudio"] => ({
        data: new Uint8Array(64).fill(b),
        encoding: "pcm_s16le",
        sampleRate: 16000,
        channels: 1,
      });
      await streamAudio(client, collect(hw, sid, 2, undefined, { chunkAudio: audio(2) }));
      const r1 = await streamAudio(
        client,
        collect(hw, sid, 1, undefined, { chunkAudio: audio(1) }),
      );
      expect(r1.code).toBeUndefined();
      const r = await streamAudio(client, commit(hw, sid));
      // The echo workflow has no text to say; the turn itself is valid.
      expect(r.code).toBeUndefined();
      expect(endMessage(r)).toBe("RESPONSE_COMPLETED");
    });
  });
}
