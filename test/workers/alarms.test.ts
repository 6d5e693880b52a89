import { runDurableObjectAlarm } from "cloudflare:test";
import { Code } from "@connectrpc/connect";
import { describe, it } from "vitest";
import type { SealedState, SessionRecord, Tombstone } from "../../src/core/session.js";
import {
  collect,
  commit,
  deviceStub,
  eventually,
  evict,
  IDLE_TTL_MS,
  newDevice,
  recordKey,
  SWEEP_SLACK_MS,
  sleep,
  stored,
  streamAudio,
  TOMBSTONE_TTL_MS,
} from "./helpers.js";

type Open = Extract<SessionRecord, { state: "open" }>;

/** The tombstone of one session in the object's storage, once it is sealed as `state`. */
function storedAs(hw: string, sid: string, state: SealedState): Promise<Tombstone> {
  return eventually(async () => {
    const r = (await stored(hw)).records.get(recordKey(hw, sid));
    return r?.state === state ? r : undefined;
  }, `session ${sid} to be ${state} in storage`);
}

// The store's one timer is the object's one alarm: workerd fires it for real here and
// the tests wait for it (each on its own object, concurrently), so expiry and tombstone
// removal happen in storage without any request touching the session.
describe.concurrent("alarms: the object's one alarm expires sessions and removes tombstones", () => {
  it("fires after the idle TTL (session expired), then after the tombstone TTL (id free)", async ({
    expect,
  }) => {
    const hw = newDevice("alarm");
    const sid = crypto.randomUUID();
    const key = recordKey(hw, sid);

    const opened = await streamAudio(collect(hw, sid, 1, "soon forgotten"));
    expect(opened.code).toBeUndefined();
    expect(opened.trailers.get("ptt-collect")).toBe("accepted");
    const open = await stored(hw);
    const session = open.records.get(key) as Open;
    expect(session).toMatchObject({ state: "open", hardwareId: hw, sessionId: sid, lastSeq: 1 });
    // One alarm, for the idle deadline (plus the sweep's slack).
    expect(open.alarm).toBe(session.touchedAt + IDLE_TTL_MS + SWEEP_SLACK_MS);

    // The alarm seals it in storage; no request touched the session meanwhile.
    const tomb = await storedAs(hw, sid, "expired");
    expect(tomb).toEqual({
      state: "expired",
      hardwareId: hw,
      sessionId: sid,
      sealedAt: session.touchedAt + IDLE_TTL_MS,
      expiredBy: "idle",
    });
    // Re-armed for the tombstone's end.
    expect((await stored(hw)).alarm).toBe(tomb.sealedAt + TOMBSTONE_TTL_MS + SWEEP_SLACK_MS);

    const late = await streamAudio(commit(hw, sid));
    expect(late.code).toBe(Code.FailedPrecondition);
    expect(late.message).toBe(`session ${sid} expired: its chunks expired after 1 s idle`);
    const lateChunk = await streamAudio(collect(hw, sid, 2, "too late"));
    expect(lateChunk.code).toBe(Code.FailedPrecondition);
    expect(lateChunk.message).toBe(`session ${sid} is already expired; chunk 2 was not added`);

    // The next alarm forgets the tombstone; nothing is left to wake for.
    const gone = await eventually(async () => {
      const s = await stored(hw);
      return s.records.has(key) ? undefined : s;
    }, "the alarm to remove the tombstone");
    expect(gone.records.size).toBe(0);
    expect(gone.alarm).toBeNull();

    // The id is free again: a new session under it, accepted and stored afresh.
    const again = await streamAudio(collect(hw, sid, 1, "a new hold"));
    expect(again.code).toBeUndefined();
    expect(again.trailers.get("ptt-collect")).toBe("accepted");
    expect((await stored(hw)).records.get(key)).toMatchObject({
      state: "open",
      text: "a new hold",
    });
  });

  it("an evicted object is woken by its alarm: expires the session, later forgets the tombstone", async ({
    expect,
  }) => {
    const hw = newDevice("alarm-evicted");
    const sid = crypto.randomUUID();
    expect((await streamAudio(collect(hw, sid, 1, "held"))).code).toBeUndefined();
    await evict(hw);
    // Nothing calls the object: only its alarm can wake it.
    expect(await storedAs(hw, sid, "expired")).toMatchObject({ expiredBy: "idle" });
    // Evicted again: the alarm it re-armed for the tombstone still wakes it to forget it.
    await evict(hw);
    const gone = await eventually(async () => {
      const s = await stored(hw);
      return s.records.size === 0 ? s : undefined;
    }, "the alarm to remove the tombstone");
    expect(gone.alarm).toBeNull();
  });

  it("runDurableObjectAlarm: an early alarm expires nothing; one past the deadline does", async ({
    expect,
  }) => {
    const hw = newDevice("alarm-early");
    const sid = crypto.randomUUID();
    expect((await streamAudio(collect(hw, sid, 1, "still held"))).code).toBeUndefined();
    expect(await runDurableObjectAlarm(deviceStub(hw))).toBe(true);
    const after = await stored(hw);
    expect(after.records.get(recordKey(hw, sid))).toMatchObject({ state: "open" });
    // The sweep re-armed the alarm for the deadline still ahead.
    expect(after.alarm).toBe(
      (after.records.get(recordKey(hw, sid)) as Open).touchedAt + IDLE_TTL_MS + SWEEP_SLACK_MS,
    );
    // Past the deadline (before the armed alarm would fire), a forced run seals it.
    await sleep(IDLE_TTL_MS + 50);
    expect(await runDurableObjectAlarm(deviceStub(hw))).toBe(true);
    expect((await stored(hw)).records.get(recordKey(hw, sid))).toMatchObject({ state: "expired" });
  });
});
