import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import {
  clientFor,
  collect,
  commit,
  newDevice,
  newSession,
  replyText,
  streamAudio,
} from "./calls.js";
import type { Capabilities, Target } from "./target.js";

/** docs/protocol.md §3/§5 TTLs: idle expiry, the hold limit, tombstones. Needs a movable clock. */
export function ttlCases(caps: Capabilities, target: () => Target): void {
  describe("TTL and tombstones (§3, §5)", () => {
    const withClock = () => {
      const t = target();
      const advance = caps.advanceClock;
      if (!advance) throw new Error("unreachable: guarded by skipIf");
      return { t, advance, client: clientFor(t) };
    };
    const skip = () => !caps.advanceClock;

    it.skipIf(skip())("an idle session expires; COMMIT says so and does not run", async () => {
      const { t, advance, client } = withClock();
      const hw = newDevice();
      const sid = newSession();
      await streamAudio(client, collect(hw, sid, 1, "forgotten"));
      advance(t.limits.idleTtlMs + 1);
      const r = await streamAudio(client, commit(hw, sid));
      expect(r.code).toBe(Code.FailedPrecondition);
      expect(r.message).toBe(
        `session ${sid} expired: its chunks expired after ${t.limits.idleTtlMs / 1000} s idle`,
      );
      const late = await streamAudio(client, collect(hw, sid, 2, "late"));
      expect(late.code).toBe(Code.FailedPrecondition);
      expect(late.message).toBe(`session ${sid} is already expired; chunk 2 was not added`);
    });

    it.skipIf(skip())("chunks keep a session alive until the absolute hold limit", async () => {
      const { t, advance, client } = withClock();
      const hw = newDevice();
      const sid = newSession();
      const step = t.limits.idleTtlMs / 2;
      let seq = 0;
      for (let held = 0; held + step < t.limits.maxHoldMs; held += step) {
        const r = await streamAudio(client, collect(hw, sid, ++seq, "a "));
        expect(r.code).toBeUndefined();
        advance(step);
      }
      advance(step);
      const r = await streamAudio(client, commit(hw, sid));
      expect(r.code).toBe(Code.FailedPrecondition);
      expect(r.message).toContain(`${t.limits.maxHoldMs / 1000} s hold limit`);
    });

    it.skipIf(skip())("a session just inside its idle TTL still commits", async () => {
      const { t, advance, client } = withClock();
      const hw = newDevice();
      const sid = newSession();
      await streamAudio(client, collect(hw, sid, 1, "just in time"));
      advance(t.limits.idleTtlMs - 1000);
      expect(replyText(await streamAudio(client, commit(hw, sid)))).toBe("just in time");
    });

    it.skipIf(skip())("a tombstone answers until its TTL, then the id is free again", async () => {
      const { t, advance, client } = withClock();
      const hw = newDevice();
      const sid = newSession();
      await streamAudio(client, collect(hw, sid, 1, "first"));
      await streamAudio(client, commit(hw, sid));
      advance(t.limits.tombstoneTtlMs - 1000);
      expect((await streamAudio(client, commit(hw, sid, { prompt: "x" }))).code).toBe(
        Code.AlreadyExists,
      );
      advance(2000);
      const reopened = await streamAudio(client, collect(hw, sid, 1, "second"));
      expect(reopened.code).toBeUndefined();
      expect(replyText(await streamAudio(client, commit(hw, sid)))).toBe("second");
    });
  });
}
