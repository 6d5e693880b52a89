import { Code, ConnectError } from "@connectrpc/connect";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_LIMITS, type Limits } from "../../src/core/limits.js";
import type { Clock, SessionStore } from "../../src/core/ports.js";
import type {
  AudioPiece,
  Chunk,
  CommittedTurn,
  Screenshot,
  SessionKey,
} from "../../src/core/session.js";
import { ChunkMode } from "../../src/gen/streaming_pb.js";
import { ManualClock } from "../support/manual-clock.js";

/**
 * ONE suite for every SessionStore (memory, Redis, Durable Object, Deno KV):
 * seq outcomes, the three chunk modes, exactly-once consume-and-seal, seals and
 * tombstones, TTLs, and the limits a store enforces (docs/protocol.md §2, §3, §5).
 *
 * `makeStore` must return an empty store that takes its time from `clock.now()`
 * only. The clock is a ManualClock: `advance` moves time and never runs a timer,
 * so every answer here is what the store owes from the clock alone; a background
 * sweeper may exist but correctness must never wait for it. Each test closes its
 * stores. Per-chunk limits (chunk text, screenshot) are checked before the store
 * (checkChunkLimits) and are covered by the contract suite, not here.
 */
export type MakeStore = (opts: {
  limits: Limits;
  clock: Clock;
}) => Promise<SessionStore> | SessionStore;

/** Small, so each limit is cheap to reach; tests override what they breach. */
export const STORE_TEST_LIMITS: Readonly<Limits> = Object.freeze({
  ...DEFAULT_LIMITS,
  maxChunkTextBytes: 1024,
  maxSessionTextBytes: 4096,
  maxChunksPerSession: 200,
  maxAudioBytesPerSession: 1024,
  maxScreenshotBytes: 1024,
  maxOpenSessionsPerDevice: 8,
  maxOpenSessionsPerInstance: 1000,
  idleTtlMs: 1_000,
  maxHoldMs: 5_000,
  tombstoneTtlMs: 3_000,
});

const { UNSPECIFIED, SNAPSHOT, DELTA } = ChunkMode;

let devices = 0;
function newDevice(): string {
  devices++;
  return `store-dev-${devices}-${Math.random().toString(36).slice(2, 8)}`;
}

function newKey(hardwareId = newDevice()): SessionKey {
  return { hardwareId, sessionId: crypto.randomUUID() };
}

function chunk(
  seq: number,
  text: string,
  mode: ChunkMode = UNSPECIFIED,
  extra: Partial<Chunk> = {},
): Chunk {
  return { seq, mode, text, ...extra };
}

/** A COMMIT's own pieces, as the router builds them: chunk_text (with audio/screenshot), then prompt. */
function finalPieces(
  prompt = "",
  mode: ChunkMode = UNSPECIFIED,
  first: Partial<Chunk> = {},
): Chunk[] {
  return [
    { seq: 0, mode, text: "", ...first },
    { seq: 0, mode, text: prompt },
  ];
}

function audio(...bytes: number[]): AudioPiece {
  return { data: Uint8Array.from(bytes), encoding: "pcm_s16le", sampleRate: 16_000, channels: 1 };
}

function shot(data: string, width?: number, height?: number): Screenshot {
  return { data, width, height };
}

/** The ConnectError a call rejects with (fails the test if it resolves or throws anything else). */
async function refusal(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    if (err instanceof ConnectError) return err;
    throw err;
  }
  throw new Error("expected the call to be refused with a ConnectError, but it succeeded");
}

async function expectRefused(
  call: Promise<unknown>,
  code: Code,
  message: string | RegExp,
): Promise<void> {
  const err = await refusal(call);
  expect(Code[err.code]).toBe(Code[code]);
  if (typeof message === "string") expect(err.rawMessage).toBe(message);
  else expect(err.rawMessage).toMatch(message);
}

export function testStore(name: string, makeStore: MakeStore): void {
  describe(`store: ${name}`, () => {
    const opened: SessionStore[] = [];
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((s) => s.close()));
    });

    async function setup(overrides: Partial<Limits> = {}) {
      const clock = new ManualClock();
      const limits: Limits = { ...STORE_TEST_LIMITS, ...overrides };
      const store = await makeStore({ limits, clock });
      opened.push(store);
      let turns = 0;
      /** Collects each chunk in order, one at a time; returns the outcomes. */
      const collectAll = async (key: SessionKey, chunks: Chunk[]) => {
        const outcomes: string[] = [];
        for (const c of chunks) outcomes.push((await store.collect(key, c)).outcome);
        return outcomes;
      };
      const commit = (key: SessionKey, pieces: Chunk[] = finalPieces()): Promise<CommittedTurn> =>
        store.commit(key, pieces, `turn-${++turns}`);
      const committedText = async (key: SessionKey, prompt = "", mode = UNSPECIFIED) =>
        (await commit(key, finalPieces(prompt, mode))).text;
      return { store, clock, limits, collectAll, commit, committedText };
    }

    describe("COLLECT outcomes", () => {
      it("the first chunk opens the session (created); later chunks do not", async () => {
        const { store } = await setup();
        const key = newKey();
        expect(await store.collect(key, chunk(1, "hello "))).toEqual({
          outcome: "accepted",
          lastSeq: 1,
          created: true,
        });
        expect(await store.collect(key, chunk(2, "world"))).toEqual({
          outcome: "accepted",
          lastSeq: 2,
          created: false,
        });
        expect((await store.stats()).openSessions).toBe(1);
      });

      it.each([
        ["UNSPECIFIED", UNSPECIFIED, ["hello ", "world"], "hello world"],
        ["SNAPSHOT", SNAPSHOT, ["hello", "hello world"], "hello world"],
        ["DELTA", DELTA, ["hello ", "world"], "hello world"],
      ] as const)(
        "%s: a seq already stored is a duplicate, acked and ignored",
        async (_, mode, texts, want) => {
          const { store, committedText } = await setup();
          const key = newKey();
          await store.collect(key, chunk(1, texts[0], mode));
          await store.collect(key, chunk(2, texts[1], mode));
          for (const seq of [1, 2]) {
            expect(await store.collect(key, chunk(seq, "REPLAYED DIFFERENTLY", mode))).toEqual({
              outcome: "duplicate",
              lastSeq: 2,
              created: false,
            });
          }
          expect(await committedText(key)).toBe(want);
        },
      );

      it("UNSPECIFIED: an older or equal seq after a newer one is stale and dropped", async () => {
        const { store, committedText } = await setup();
        const key = newKey();
        await store.collect(key, chunk(2, "newer text"));
        expect(await store.collect(key, chunk(1, "older text"))).toEqual({
          outcome: "stale",
          lastSeq: 2,
          created: false,
        });
        expect(await committedText(key)).toBe("newer text");
      });

      it("lastSeq is the highest seq stored, whatever the arrival order", async () => {
        const { store } = await setup();
        const key = newKey();
        expect((await store.collect(key, chunk(3, "c", DELTA))).lastSeq).toBe(3);
        expect(await store.collect(key, chunk(1, "a", DELTA))).toEqual({
          outcome: "accepted",
          lastSeq: 3,
          created: false,
        });
        expect((await store.collect(key, chunk(0, "z", DELTA))).lastSeq).toBe(3);
      });

      it("concurrent chunks of a new session: one creates it, all are stored", async () => {
        const { store, committedText } = await setup();
        const key = newKey();
        const results = await Promise.all(
          Array.from({ length: 100 }, (_, i) =>
            store.collect(key, chunk(i + 1, `${i + 1},`, DELTA)),
          ),
        );
        expect(results.filter((r) => r.created)).toHaveLength(1);
        expect(results.every((r) => r.outcome === "accepted")).toBe(true);
        expect(Math.max(...results.map((r) => r.lastSeq))).toBe(100);
        const want = Array.from({ length: 100 }, (_, i) => `${i + 1},`).join("");
        expect(await committedText(key)).toBe(want);
      });
    });

    describe("chunk modes (docs/protocol.md §3)", () => {
      it.each([
        [["hello ", "world"], "", "hello world"],
        [["call ", "mom ", "and ", "a", "sk her"], "", "call mom and ask her"],
        [
          ["what is the whether", "what is the weather in", "What is the weather in Paris?"],
          "",
          "What is the weather in Paris?",
        ],
        [["can you"], " help me", "can you help me"],
        [["hey what's up"], "Hey, what's up?", "Hey, what's up?"],
      ])("UNSPECIFIED: %j + prompt %j commits %j", async (texts, prompt, want) => {
        const { collectAll, committedText } = await setup();
        const key = newKey();
        await collectAll(
          key,
          texts.map((t, i) => chunk(i + 1, t)),
        );
        expect(await committedText(key, prompt)).toBe(want);
      });

      it("unsequenced chunks (seq 0) are always accepted, in arrival order, in every mode", async () => {
        const { store, collectAll, committedText } = await setup();
        const plain = newKey();
        expect(
          await collectAll(plain, [chunk(0, "one "), chunk(0, "two "), chunk(0, "three")]),
        ).toEqual(["accepted", "accepted", "accepted"]);
        expect((await store.collect(plain, chunk(0, "!"))).lastSeq).toBe(0);
        expect(await committedText(plain)).toBe("one two three!");

        // After a sequenced chunk, an unsequenced one is not stale: it lands after it.
        const mixed = newKey();
        await store.collect(mixed, chunk(5, "five "));
        expect(await store.collect(mixed, chunk(0, "then this"))).toEqual({
          outcome: "accepted",
          lastSeq: 5,
          created: false,
        });
        expect(await committedText(mixed)).toBe("five then this");

        const delta = newKey();
        expect(
          await collectAll(delta, [
            chunk(0, "a", DELTA),
            chunk(0, "a", DELTA),
            chunk(0, "b", DELTA),
          ]),
        ).toEqual(["accepted", "accepted", "accepted"]);
        expect(await committedText(delta)).toBe("aab");

        const snapshot = newKey();
        await collectAll(snapshot, [chunk(0, "first try", SNAPSHOT), chunk(0, "second", SNAPSHOT)]);
        expect(await committedText(snapshot)).toBe("second");
      });

      it("SNAPSHOT: the highest seq wins; an older one arriving later is stale", async () => {
        const { store, collectAll, committedText } = await setup();
        const key = newKey();
        await collectAll(key, [chunk(1, "what", SNAPSHOT), chunk(3, "what is the time", SNAPSHOT)]);
        expect(await store.collect(key, chunk(2, "what is", SNAPSHOT))).toEqual({
          outcome: "stale",
          lastSeq: 3,
          created: false,
        });
        expect(await committedText(key)).toBe("what is the time");
      });

      it("DELTA: an older seq arriving late is inserted in its place", async () => {
        const { collectAll, committedText } = await setup();
        const key = newKey();
        expect(
          await collectAll(key, [
            chunk(1, "a ", DELTA),
            chunk(3, "c ", DELTA),
            chunk(2, "b ", DELTA),
          ]),
        ).toEqual(["accepted", "accepted", "accepted"]);
        expect(await committedText(key)).toBe("a b c ");
      });

      it("SNAPSHOT and DELTA: any permutation and duplication commits the same text", async () => {
        const { collectAll, committedText } = await setup();
        const arrivals = fc
          .array(fc.string({ minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 8 })
          .chain((texts) =>
            fc.tuple(
              fc.constant(texts),
              fc.array(fc.nat({ max: texts.length - 1 }), { maxLength: 6 }).chain((dups) => {
                const order = [...texts.keys(), ...dups];
                return fc.shuffledSubarray(order, {
                  minLength: order.length,
                  maxLength: order.length,
                });
              }),
            ),
          );
        await fc.assert(
          fc.asyncProperty(arrivals, async ([texts, order]) => {
            const delta = newKey();
            await collectAll(
              delta,
              order.map((i) => chunk(i + 1, texts[i] as string, DELTA)),
            );
            expect(await committedText(delta)).toBe(texts.join(""));
            const snapshot = newKey();
            await collectAll(
              snapshot,
              order.map((i) => chunk(i + 1, texts[i] as string, SNAPSHOT)),
            );
            expect(await committedText(snapshot)).toBe(texts[texts.length - 1]);
          }),
          { numRuns: 60 },
        );
      });

      it("a chunk that would switch the session's mode is refused; the buffer is kept", async () => {
        const { store, committedText } = await setup();
        const key = newKey();
        await store.collect(key, chunk(1, "kept", SNAPSHOT));
        await expectRefused(
          store.collect(key, chunk(2, "other", DELTA)),
          Code.InvalidArgument,
          /^chunk_mode: /,
        );
        expect(await committedText(key)).toBe("kept");
      });
    });

    describe("COMMIT", () => {
      it("the turn carries the hold: ids, turn id, text, audio, screenshot, time held", async () => {
        const { store, clock } = await setup();
        const key = newKey();
        await store.collect(key, chunk(1, "look at ", DELTA, { audio: audio(1, 2) }));
        clock.advance(250);
        await store.collect(key, chunk(2, "this", DELTA, { screenshot: shot("AAAA", 640, 480) }));
        clock.advance(250);
        const turn = await store.commit(key, finalPieces("", DELTA), "turn-xyz");
        expect(turn).toMatchObject({
          turnId: "turn-xyz",
          hardwareId: key.hardwareId,
          sessionId: key.sessionId,
          text: "look at this",
          audio: [audio(1, 2)],
          screenshot: shot("AAAA", 640, 480),
          heldMs: 500,
        });
      });

      it("chunk_text then prompt count as chunks after the last, merged by the mode", async () => {
        const { store, commit } = await setup();
        const delta = newKey();
        await store.collect(delta, chunk(1, "one ", DELTA));
        const d = await commit(delta, finalPieces("three", DELTA, { text: "two " }));
        expect(d.text).toBe("one two three");

        const snapshot = newKey();
        await store.collect(snapshot, chunk(1, "draft", SNAPSHOT));
        expect((await commit(snapshot, finalPieces("final", SNAPSHOT))).text).toBe("final");
        const kept = newKey();
        await store.collect(kept, chunk(1, "only the buffer", SNAPSHOT));
        expect((await commit(kept, finalPieces("", SNAPSHOT))).text).toBe("only the buffer");
      });

      it("100 concurrent COMMITs: one turn, 99 ALREADY_EXISTS", async () => {
        const { store } = await setup();
        const key = newKey();
        await store.collect(key, chunk(1, "once", DELTA));
        const settled = await Promise.allSettled(
          Array.from({ length: 100 }, (_, i) => store.commit(key, finalPieces("", DELTA), `t${i}`)),
        );
        const turns = settled.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
        expect(turns).toHaveLength(1);
        expect(turns[0]?.text).toBe("once");
        const errors = settled.flatMap((s) => (s.status === "rejected" ? [s.reason] : []));
        expect(errors).toHaveLength(99);
        for (const err of errors) {
          expect(err).toBeInstanceOf(ConnectError);
          expect((err as ConnectError).code).toBe(Code.AlreadyExists);
          expect((err as ConnectError).rawMessage).toBe(
            `session ${key.sessionId} is already committed`,
          );
        }
        expect(await store.stats()).toEqual({ openSessions: 0, bufferedBytes: 0 });
      });

      it("a COMMIT without COLLECTs commits its own pieces, exactly once", async () => {
        const { store } = await setup();
        const key = newKey();
        const settled = await Promise.allSettled(
          Array.from({ length: 100 }, (_, i) =>
            store.commit(key, finalPieces("just this"), `t${i}`),
          ),
        );
        const turns = settled.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
        expect(turns.map((t) => t.text)).toEqual(["just this"]);
        expect(settled.filter((s) => s.status === "rejected")).toHaveLength(99);
        await expectRefused(
          store.collect(key, chunk(1, "late")),
          Code.FailedPrecondition,
          `session ${key.sessionId} is already committed; chunk 1 was not added`,
        );
        expect((await store.stats()).openSessions).toBe(0);
      });

      it("nothing to commit: INVALID_ARGUMENT, and the session stays open", async () => {
        const { store, commit, committedText } = await setup();
        await expectRefused(commit(newKey()), Code.InvalidArgument, /^prompt: .*nothing to commit/);
        const key = newKey();
        await store.collect(key, chunk(1, ""));
        await expectRefused(commit(key), Code.InvalidArgument, /^prompt: .*nothing to commit/);
        await expectRefused(commit(key), Code.InvalidArgument, /^prompt: .*nothing to commit/);
        expect(await store.collect(key, chunk(2, "now there is"))).toMatchObject({
          outcome: "accepted",
          created: false,
        });
        expect(await committedText(key)).toBe("now there is");
      });

      it("a COMMIT refused for a limit leaves the buffer intact; the retry has all of it", async () => {
        const { store, commit } = await setup({
          maxSessionTextBytes: 16,
          maxAudioBytesPerSession: 4,
        });
        const key = newKey();
        await store.collect(key, chunk(1, "0123456789", DELTA, { audio: audio(1, 2, 3) }));
        await store.collect(key, chunk(2, "ab", DELTA, { screenshot: shot("S1", 1, 2) }));
        const before = await store.stats();
        await expectRefused(
          commit(key, finalPieces("too long!", DELTA)),
          Code.ResourceExhausted,
          /^max_session_text_bytes: /,
        );
        await expectRefused(
          commit(key, finalPieces("", DELTA, { audio: audio(4, 5) })),
          Code.ResourceExhausted,
          /^max_audio_bytes_per_session: /,
        );
        expect(await store.stats()).toEqual(before);
        const turn = await commit(key, finalPieces("cd", DELTA, { audio: audio(4) }));
        expect(turn).toMatchObject({
          text: "0123456789abcd",
          audio: [audio(1, 2, 3), audio(4)],
          screenshot: shot("S1", 1, 2),
        });
      });

      it("COMMIT of a cancelled session: FAILED_PRECONDITION, nothing runs", async () => {
        const { store, commit } = await setup();
        const key = newKey();
        await store.collect(key, chunk(1, "never mind"));
        await store.cancel(key);
        await expectRefused(
          commit(key, finalPieces("please")),
          Code.FailedPrecondition,
          `session ${key.sessionId} was cancelled; nothing was committed`,
        );
      });
    });

    describe("sealed sessions", () => {
      it.each(["committed", "cancelled", "expired"] as const)(
        "COLLECT on a %s session: FAILED_PRECONDITION, nothing stored",
        async (state) => {
          const { store, clock, limits, commit } = await setup();
          const key = newKey();
          await store.collect(key, chunk(1, "first"));
          if (state === "committed") await commit(key);
          if (state === "cancelled") await store.cancel(key);
          if (state === "expired") clock.advance(limits.idleTtlMs);
          for (const seq of [7, 0]) {
            await expectRefused(
              store.collect(key, chunk(seq, "more", UNSPECIFIED, { audio: audio(1) })),
              Code.FailedPrecondition,
              `session ${key.sessionId} is already ${state}; chunk ${seq} was not added`,
            );
          }
          await store.sweep();
          expect(await store.stats()).toEqual({ openSessions: 0, bufferedBytes: 0 });
        },
      );

      it("a COMMIT after a COMMIT: ALREADY_EXISTS", async () => {
        const { store, commit } = await setup();
        const key = newKey();
        await store.collect(key, chunk(1, "hi"));
        await commit(key);
        await expectRefused(
          commit(key, finalPieces("again")),
          Code.AlreadyExists,
          `session ${key.sessionId} is already committed`,
        );
      });
    });

    describe("CANCEL", () => {
      it("an open session: buffer dropped, sealed CANCELLED, others untouched", async () => {
        const { store, committedText } = await setup();
        const hw = newDevice();
        const key = newKey(hw);
        const other = newKey(hw);
        await store.collect(key, chunk(1, "drop me", UNSPECIFIED, { audio: audio(1, 2) }));
        await store.collect(other, chunk(1, "keep me"));
        expect(await store.cancel(key)).toBe("cancelled");
        expect((await store.stats()).openSessions).toBe(1);
        await expectRefused(
          store.collect(key, chunk(2, "x")),
          Code.FailedPrecondition,
          `session ${key.sessionId} is already cancelled; chunk 2 was not added`,
        );
        expect(await store.cancel(key)).toBe("cancelled");
        expect(await committedText(other)).toBe("keep me");
      });

      it("an unknown session: OK, and chunks that overtook the cancel are refused", async () => {
        const { store } = await setup();
        const key = newKey();
        expect(await store.cancel(key)).toBe("unknown");
        expect(await store.cancel(key)).toBe("cancelled");
        await expectRefused(
          store.collect(key, chunk(1, "late")),
          Code.FailedPrecondition,
          `session ${key.sessionId} is already cancelled; chunk 1 was not added`,
        );
        expect(await store.stats()).toEqual({ openSessions: 0, bufferedBytes: 0 });
      });

      it("an already sealed session keeps its seal", async () => {
        const { store, clock, limits, commit } = await setup();
        const committed = newKey();
        await store.collect(committed, chunk(1, "done"));
        await commit(committed);
        expect(await store.cancel(committed)).toBe("committed");
        await expectRefused(commit(committed), Code.AlreadyExists, /already committed/);

        const expired = newKey();
        await store.collect(expired, chunk(1, "slow"));
        clock.advance(limits.idleTtlMs);
        expect(await store.cancel(expired)).toBe("expired");
        await expectRefused(commit(expired), Code.FailedPrecondition, /expired/);
      });
    });

    describe("TTL and tombstones", () => {
      it("a chunk keeps a session alive; idleTtlMs without one expires it", async () => {
        const { store, clock, limits, commit } = await setup();
        const key = newKey();
        await store.collect(key, chunk(1, "a "));
        clock.advance(limits.idleTtlMs - 1);
        await store.collect(key, chunk(2, "b"));
        clock.advance(limits.idleTtlMs - 1);
        expect((await store.stats()).openSessions).toBe(1);
        // "No chunk for this long" (Limits.idleTtlMs): expired at exactly the TTL.
        clock.advance(1);
        await expectRefused(
          commit(key),
          Code.FailedPrecondition,
          `session ${key.sessionId} expired: its chunks expired after ${limits.idleTtlMs / 1000} s idle`,
        );
        await expectRefused(
          store.collect(key, chunk(3, "c")),
          Code.FailedPrecondition,
          `session ${key.sessionId} is already expired; chunk 3 was not added`,
        );
      });

      it("a busy session still expires at the absolute hold limit", async () => {
        const { store, clock, limits, commit } = await setup();
        const key = newKey();
        const step = limits.idleTtlMs / 2;
        let seq = 0;
        for (let held = 0; held < limits.maxHoldMs; held += step) {
          expect((await store.collect(key, chunk(++seq, "a "))).outcome).toBe("accepted");
          clock.advance(step);
        }
        await expectRefused(
          commit(key),
          Code.FailedPrecondition,
          `session ${key.sessionId} expired: its chunks expired after the ${limits.maxHoldMs / 1000} s hold limit`,
        );
      });

      // Regression: the reason was once "which limit is exceeded now", not "which deadline came first".
      it("the expiry reason is the deadline that came first, however late it is noticed", async () => {
        // The tombstone must outlive the hold limit for the late COMMIT to meet it.
        const { store, clock, limits, commit } = await setup({ tombstoneTtlMs: 10_000 });
        const key = newKey();
        await store.collect(key, chunk(1, "forgotten"));
        clock.advance(limits.maxHoldMs + 1);
        await expectRefused(
          commit(key),
          Code.FailedPrecondition,
          `session ${key.sessionId} expired: its chunks expired after ${limits.idleTtlMs / 1000} s idle`,
        );
      });

      it.each(["committed", "cancelled"] as const)(
        "a %s tombstone answers until tombstoneTtlMs, then the id is forgotten",
        async (state) => {
          const { store, clock, limits, commit } = await setup();
          const key = newKey();
          await store.collect(key, chunk(1, "x"));
          if (state === "committed") await commit(key);
          else await store.cancel(key);
          clock.advance(limits.tombstoneTtlMs - 1);
          await expectRefused(
            store.collect(key, chunk(2, "y")),
            Code.FailedPrecondition,
            /already/,
          );
          clock.advance(1);
          expect(await store.collect(key, chunk(2, "y"))).toEqual({
            outcome: "accepted",
            lastSeq: 2,
            created: true,
          });
        },
      );

      // Regression: a lazily noticed expiry was once sealed when noticed, not at its deadline, so the
      // same late request was refused or accepted depending on whether a sweep had run.
      it("an expired session is forgotten tombstoneTtlMs after its deadline", async () => {
        const { store, clock, limits } = await setup();
        const key = newKey();
        await store.collect(key, chunk(1, "x"));
        clock.advance(limits.idleTtlMs + limits.tombstoneTtlMs);
        expect(await store.collect(key, chunk(2, "y"))).toMatchObject({ created: true });
      });

      it("sweep() expires overdue sessions, returns the count, and the gauges go down", async () => {
        const { store, clock, limits } = await setup();
        const hw = newDevice();
        const stale = [newKey(hw), newKey(hw), newKey()];
        for (const key of stale) {
          await store.collect(key, chunk(1, "abcd", UNSPECIFIED, { audio: audio(1, 2, 3, 4) }));
        }
        const sealed = newKey();
        await store.collect(sealed, chunk(1, "cancelled before"));
        await store.cancel(sealed);
        clock.advance(limits.idleTtlMs / 2);
        const fresh = newKey(hw);
        await store.collect(fresh, chunk(1, "ab"));
        const before = await store.stats();
        expect(before.openSessions).toBe(4);
        expect(before.bufferedBytes).toBeGreaterThanOrEqual(3 * 8 + 2);

        clock.advance(limits.idleTtlMs / 2);
        expect(await store.sweep()).toBe(3);
        const after = await store.stats();
        expect(after.openSessions).toBe(1);
        expect(after.bufferedBytes).toBeGreaterThanOrEqual(2);
        expect(after.bufferedBytes).toBeLessThan(before.bufferedBytes);
        expect(await store.sweep()).toBe(0);
        // Swept sessions keep their tombstone: a late COMMIT learns why.
        await expectRefused(
          store.commit(stale[0] as SessionKey, finalPieces("x"), "t"),
          Code.FailedPrecondition,
          /idle/,
        );

        clock.advance(limits.idleTtlMs / 2);
        expect(await store.sweep()).toBe(1);
        expect(await store.stats()).toEqual({ openSessions: 0, bufferedBytes: 0 });
      });

      it("commit and cancel bring the gauges down at once", async () => {
        const { store, commit } = await setup();
        const a = newKey();
        const b = newKey();
        await store.collect(a, chunk(1, "some text", UNSPECIFIED, { screenshot: shot("QUJD") }));
        await store.collect(b, chunk(1, "more", UNSPECIFIED, { audio: audio(9, 9) }));
        const both = await store.stats();
        expect(both.openSessions).toBe(2);
        expect(both.bufferedBytes).toBeGreaterThanOrEqual(9 + 4 + 4 + 2);
        await commit(a);
        const one = await store.stats();
        expect(one.openSessions).toBe(1);
        expect(one.bufferedBytes).toBeGreaterThanOrEqual(4 + 2);
        expect(one.bufferedBytes).toBeLessThan(both.bufferedBytes);
        await store.cancel(b);
        expect(await store.stats()).toEqual({ openSessions: 0, bufferedBytes: 0 });
      });
    });

    describe("open-session limits", () => {
      it("per device: RESOURCE_EXHAUSTED naming the limit; the refused chunk leaves nothing", async () => {
        const { store, commit } = await setup({ maxOpenSessionsPerDevice: 3 });
        const hw = newDevice();
        const keys = [newKey(hw), newKey(hw), newKey(hw)];
        for (const key of keys) await store.collect(key, chunk(1, "open"));
        const refused = newKey(hw);
        await expectRefused(
          store.collect(refused, chunk(1, "one too many")),
          Code.ResourceExhausted,
          /^max_open_sessions_per_device: /,
        );
        // Another device is not affected.
        expect((await store.collect(newKey(), chunk(1, "elsewhere"))).created).toBe(true);
        expect((await store.stats()).openSessions).toBe(4);
        // A sealed session frees its slot; the refused id was never stored.
        await commit(keys[0] as SessionKey);
        expect(await store.collect(refused, chunk(2, "now"))).toEqual({
          outcome: "accepted",
          lastSeq: 2,
          created: true,
        });
      });

      it("per device: the count follows sessions sealed and opened again (3 → 1 → 3)", async () => {
        const { store } = await setup({ maxOpenSessionsPerDevice: 3 });
        const hw = newDevice();
        const keys = [newKey(hw), newKey(hw), newKey(hw)];
        for (const key of keys) await store.collect(key, chunk(1, "open"));
        await store.cancel(keys[0] as SessionKey);
        await store.cancel(keys[2] as SessionKey);
        // One left open: two more fit, a third does not; the one left keeps collecting.
        for (const key of [newKey(hw), newKey(hw)]) {
          expect((await store.collect(key, chunk(1, "again"))).created).toBe(true);
        }
        await expectRefused(
          store.collect(newKey(hw), chunk(1, "one too many")),
          Code.ResourceExhausted,
          /^max_open_sessions_per_device: /,
        );
        expect((await store.collect(keys[1] as SessionKey, chunk(2, "more"))).created).toBe(false);
        expect((await store.stats()).openSessions).toBe(3);
      });

      it("per instance: RESOURCE_EXHAUSTED naming the limit; the refused chunk leaves nothing", async () => {
        const { store } = await setup({
          maxOpenSessionsPerDevice: 3,
          maxOpenSessionsPerInstance: 4,
        });
        const hw = newDevice();
        const keys = [newKey(hw), newKey(hw), newKey(hw), newKey()];
        for (const key of keys) await store.collect(key, chunk(1, "open"));
        const refused = newKey();
        await expectRefused(
          store.collect(refused, chunk(1, "one too many")),
          Code.ResourceExhausted,
          /^max_open_sessions_per_instance: /,
        );
        expect((await store.stats()).openSessions).toBe(4);
        await store.cancel(keys[3] as SessionKey);
        expect(await store.collect(refused, chunk(1, "now"))).toMatchObject({ created: true });
      });

      it("a session refused on its first chunk holds no slot", async () => {
        const { store } = await setup({ maxOpenSessionsPerDevice: 1, maxSessionTextBytes: 8 });
        const hw = newDevice();
        const refused = newKey(hw);
        for (let i = 0; i < 3; i++) {
          await expectRefused(
            store.collect(refused, chunk(1, "123456789")),
            Code.ResourceExhausted,
            /^max_session_text_bytes: /,
          );
        }
        expect(await store.stats()).toEqual({ openSessions: 0, bufferedBytes: 0 });
        expect((await store.collect(newKey(hw), chunk(1, "fits"))).created).toBe(true);
      });

      // Regression (was a bug): the memory store counts a session as open until it is sealed, and an
      // overdue session is sealed only when accessed or swept, so a device whose holds all expired
      // is refused until the sweeper runs (up to idleTtlMs/4 later).
      it("sessions past their deadline do not count against the open-session limits", async () => {
        const { store, clock, limits } = await setup({
          maxOpenSessionsPerDevice: 2,
          maxOpenSessionsPerInstance: 3,
        });
        const hw = newDevice();
        await store.collect(newKey(hw), chunk(1, "abandoned"));
        await store.collect(newKey(hw), chunk(1, "abandoned"));
        await store.collect(newKey(), chunk(1, "abandoned"));
        clock.advance(limits.idleTtlMs);
        expect((await store.collect(newKey(hw), chunk(1, "new hold"))).created).toBe(true);
        expect((await store.collect(newKey(), chunk(1, "new hold"))).created).toBe(true);
      });
    });

    describe("per-session limits keep what is stored", () => {
      it("chunks per session", async () => {
        const { store, collectAll, committedText } = await setup({ maxChunksPerSession: 5 });
        const key = newKey();
        await collectAll(
          key,
          [1, 2, 3, 4, 5].map((seq) => chunk(seq, `${seq}`, DELTA)),
        );
        await expectRefused(
          store.collect(key, chunk(6, "6", DELTA)),
          Code.ResourceExhausted,
          /^max_chunks_per_session: /,
        );
        await expectRefused(
          store.collect(key, chunk(0, "0", DELTA)),
          Code.ResourceExhausted,
          /^max_chunks_per_session: /,
        );
        expect((await store.collect(key, chunk(3, "3", DELTA))).outcome).toBe("duplicate");
        expect(await committedText(key, "", DELTA)).toBe("12345");
      });

      it("merged text per session, in UTF-8 bytes", async () => {
        const { store, collectAll, committedText } = await setup({ maxSessionTextBytes: 16 });
        const key = newKey();
        // 10 + 6 bytes = exactly the limit, in 8 characters.
        await collectAll(key, [chunk(1, "ééééé", DELTA), chunk(2, "ééé", DELTA)]);
        await expectRefused(
          store.collect(key, chunk(3, "a", DELTA)),
          Code.ResourceExhausted,
          /^max_session_text_bytes: /,
        );
        const plain = newKey();
        await store.collect(plain, chunk(1, "0123456789"));
        await expectRefused(
          store.collect(plain, chunk(2, " and more")),
          Code.ResourceExhausted,
          /^max_session_text_bytes: /,
        );
        expect(await committedText(key, "", DELTA)).toBe("éééééééé");
        expect(await committedText(plain)).toBe("0123456789");
      });

      it("audio per session: a refused chunk stores none of its text either", async () => {
        const { store, commit } = await setup({ maxAudioBytesPerSession: 8 });
        const key = newKey();
        await store.collect(key, chunk(1, "kept ", DELTA, { audio: audio(1, 2, 3, 4, 5) }));
        await expectRefused(
          store.collect(key, chunk(2, "dropped", DELTA, { audio: audio(6, 7, 8, 9) })),
          Code.ResourceExhausted,
          /^max_audio_bytes_per_session: /,
        );
        await store.collect(key, chunk(3, "too", DELTA, { audio: audio(6, 7, 8) }));
        const turn = await commit(key, finalPieces("", DELTA));
        expect(turn.text).toBe("kept too");
        expect(turn.audio).toEqual([audio(1, 2, 3, 4, 5), audio(6, 7, 8)]);
      });
    });

    describe("audio and screenshot", () => {
      it.each([
        ["DELTA", DELTA],
        ["SNAPSHOT", SNAPSHOT],
      ] as const)("%s: audio pieces are returned in seq order", async (_, mode) => {
        const { collectAll, commit } = await setup();
        const key = newKey();
        await collectAll(key, [
          chunk(3, "three", mode, { audio: audio(3) }),
          chunk(1, "one", mode, { audio: audio(1) }),
          chunk(4, "four", mode, { audio: audio(4, 4) }),
          chunk(2, "two", mode, { audio: audio(2) }),
          chunk(2, "two", mode, { audio: audio(2) }),
        ]);
        const turn = await commit(key, finalPieces("", mode, { audio: audio(5) }));
        expect(turn.audio.map((a) => [...a.data])).toEqual([[1], [2], [3], [4, 4], [5]]);
        expect(turn.audio[0]).toEqual(audio(1));
        expect(turn.text).toBe(mode === DELTA ? "onetwothreefour" : "four");
      });

      it("a hold of audio only commits with empty text", async () => {
        const { store, commit } = await setup();
        const key = newKey();
        await store.collect(key, chunk(1, "", UNSPECIFIED, { audio: audio(1, 2) }));
        await store.collect(key, chunk(2, "", UNSPECIFIED, { audio: audio(3) }));
        const turn = await commit(key);
        expect(turn.text).toBe("");
        expect(turn.audio).toEqual([audio(1, 2), audio(3)]);
      });

      it("screenshot: last accepted wins, width and height travel with it", async () => {
        const { store, collectAll, commit } = await setup();
        const key = newKey();
        await collectAll(key, [
          chunk(1, "a ", UNSPECIFIED, { screenshot: shot("FIRST", 100, 200) }),
          chunk(2, "b ", UNSPECIFIED, { screenshot: shot("SECOND", 300, 400) }),
          chunk(3, "c ", UNSPECIFIED),
          chunk(2, "b ", UNSPECIFIED, { screenshot: shot("DUPLICATE", 1, 1) }),
          chunk(1, "a ", UNSPECIFIED, { screenshot: shot("STALE", 2, 2) }),
        ]);
        expect((await commit(newKeyLike(key))).screenshot).toEqual(shot("SECOND", 300, 400));

        const bare = newKey();
        await collectAll(bare, [
          chunk(1, "a", UNSPECIFIED, { screenshot: shot("SIZED", 100, 200) }),
          chunk(2, "b", UNSPECIFIED, { screenshot: shot("UNSIZED") }),
        ]);
        const turn = await commit(bare);
        expect(turn.screenshot?.data).toBe("UNSIZED");
        expect(turn.screenshot?.width).toBeUndefined();
        expect(turn.screenshot?.height).toBeUndefined();

        const last = newKey();
        await store.collect(last, chunk(1, "a", UNSPECIFIED, { screenshot: shot("HELD", 1, 1) }));
        const final = await commit(
          last,
          finalPieces("", UNSPECIFIED, { screenshot: shot("AT_COMMIT", 5, 6) }),
        );
        expect(final.screenshot).toEqual(shot("AT_COMMIT", 5, 6));
      });
    });

    describe("keys", () => {
      it("the same session id under two hardware ids is two unrelated sessions", async () => {
        const { store, committedText } = await setup({ maxOpenSessionsPerDevice: 1 });
        const sessionId = crypto.randomUUID();
        const a: SessionKey = { hardwareId: newDevice(), sessionId };
        const b: SessionKey = { hardwareId: newDevice(), sessionId };
        await store.collect(a, chunk(5, "for A"));
        expect(await store.collect(b, chunk(1, "for B"))).toEqual({
          outcome: "accepted",
          lastSeq: 1,
          created: true,
        });
        expect(await committedText(a)).toBe("for A");
        expect(await store.collect(b, chunk(2, " still open"))).toMatchObject({
          outcome: "accepted",
        });
        expect(await store.cancel(a)).toBe("committed");
        expect(await committedText(b)).toBe("for B still open");
      });
    });

    describe("instance-wide bounds", () => {
      it("buffered bytes per instance: RESOURCE_EXHAUSTED naming the limit, nothing lost", async () => {
        const { store, committedText } = await setup({ maxBufferedBytesPerInstance: 40 });
        const a = newKey();
        const b = newKey();
        await store.collect(a, chunk(1, "x".repeat(30), DELTA));
        await expectRefused(
          store.collect(b, chunk(1, "y".repeat(20), DELTA)),
          Code.ResourceExhausted,
          /^max_buffered_bytes_per_instance: /,
        );
        expect((await store.stats()).bufferedBytes).toBe(30);
        expect(await committedText(a)).toBe("x".repeat(30));
        // Committing gave the bytes back.
        expect((await store.stats()).bufferedBytes).toBe(0);
        expect((await store.collect(b, chunk(1, "y".repeat(20), DELTA))).outcome).toBe("accepted");
      });

      it("tombstones per device: a device that seals too many forgets its own oldest, never another's", async () => {
        const { store, commit } = await setup({ maxTombstonesPerDevice: 3 });
        const victim = newKey();
        await store.collect(victim, chunk(1, "once"));
        await commit(victim);
        const noisy = newDevice();
        for (let i = 0; i < 10; i++) expect(await store.cancel(newKey(noisy))).toBe("unknown");
        // The victim's seal still answers: its turn cannot run twice.
        await expectRefused(
          commit(victim),
          Code.AlreadyExists,
          `session ${victim.sessionId} is already committed`,
        );
      });
    });
  });
}

/** The same key as a fresh object (a store must not rely on object identity). */
function newKeyLike(key: SessionKey): SessionKey {
  return { hardwareId: key.hardwareId, sessionId: key.sessionId };
}
