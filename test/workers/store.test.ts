import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { SessionStore } from "../../src/core/ports.js";
import type { SessionKey } from "../../src/core/session.js";
import { createSessionStore } from "../../src/core/session-engine.js";
import { ChunkMode } from "../../src/gen/streaming_pb.js";
import type { DeviceObject } from "../../src/runtimes/cloudflare/device-object.js";
import { createStorageDriver } from "../../src/runtimes/cloudflare/storage-driver.js";
import { STORE_TEST_LIMITS, testStore } from "../contract/store.js";
import { ManualClock } from "../support/manual-clock.js";

// The store suite on a device object's real SQLite storage. Each test gets a new object;
// the engine over that object's KV is built and called inside the object (storage is
// usable only in its own object's context); the object's own store never reads these keys.
testStore("durable object storage", async ({ limits, clock }) => {
  const stub = env.DEVICE.get(env.DEVICE.newUniqueId()) as DurableObjectStub<DeviceObject>;
  const store = await runInDurableObject(stub, (_instance, state) =>
    createSessionStore({
      driver: createStorageDriver(state.storage.kv, limits.maxOpenSessionsPerInstance),
      limits,
      clock,
    }),
  );
  const inside = <T>(call: () => Promise<T>): Promise<T> => runInDurableObject(stub, call);
  return {
    collect: (key, chunk) => inside(() => store.collect(key, chunk)),
    commit: (key, pieces, turnId) => inside(() => store.commit(key, pieces, turnId)),
    cancel: (key) => inside(() => store.cancel(key)),
    sweep: () => inside(() => store.sweep()),
    stats: () => inside(() => store.stats()),
    ping: () => inside(() => store.ping()),
    close: () => inside(() => store.close()),
  } satisfies SessionStore;
});

describe("durable object storage driver: what it serves is what storage holds", () => {
  it("a store rebuilt from the object's storage answers as the one that wrote it", async () => {
    const stub = env.DEVICE.get(env.DEVICE.newUniqueId()) as DurableObjectStub<DeviceObject>;
    const clock = new ManualClock();
    const limits = STORE_TEST_LIMITS;
    const open = (kv: SyncKvStorage) =>
      createSessionStore({ driver: createStorageDriver(kv), limits, clock });
    const hw = "rebuilt-device";
    const [held, committed, cancelled] = [1, 2, 3].map(() => ({
      hardwareId: hw,
      sessionId: crypto.randomUUID(),
    })) as [SessionKey, SessionKey, SessionKey];
    const delta = (seq: number, text: string) => ({ seq, mode: ChunkMode.DELTA, text });
    await runInDurableObject(stub, async (_instance, state) => {
      const before = open(state.storage.kv);
      await before.collect(held, delta(1, "kept "));
      await before.collect(held, delta(2, "whole"));
      await before.collect(committed, delta(1, "done"));
      await before.commit(committed, [], "t1");
      await before.cancel(cancelled);
    });
    await runInDurableObject(stub, async (_instance, state) => {
      const after = open(state.storage.kv);
      expect(await after.stats()).toEqual({ openSessions: 1, bufferedBytes: 10 });
      expect((await after.collect(held, delta(2, "whole"))).outcome).toBe("duplicate");
      await expect(after.commit(committed, [], "t2")).rejects.toMatchObject({
        rawMessage: `session ${committed.sessionId} is already committed`,
      });
      expect(await after.cancel(cancelled)).toBe("cancelled");
      expect((await after.commit(held, [], "t3")).text).toBe("kept whole");
      await after.close();
    });
  });
});
