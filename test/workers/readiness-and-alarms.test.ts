import { runInDurableObject, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { AlarmClock } from "../../src/runtimes/cloudflare/alarm-clock.js";
import { READY_OBJECT } from "../../src/runtimes/cloudflare/device-client.js";
import { deviceStub, sleep } from "./helpers.js";

describe("the Worker's /readyz", () => {
  // Regression (was a defect): /readyz pinged the Worker's own memory store, which holds
  // nothing on Workers, so it said "ready" whatever the device objects did.
  it("is ready when a device object answers from its storage, 503 when it does not", async () => {
    const ok = await SELF.fetch("https://ptt.test/readyz");
    expect(ok.status).toBe(200);
    expect(await ok.text()).toBe("ready\n");
    await runInDurableObject(deviceStub(READY_OBJECT), (instance) => {
      instance.fetch = async () => new Response("broken\n", { status: 500 });
    });
    const broken = await SELF.fetch("https://ptt.test/readyz");
    expect(broken.status).toBe(503);
    expect(await broken.text()).toBe("device objects not reachable\n");
  });
});

describe("AlarmClock", () => {
  // Regression (was a defect): `void storage.setAlarm(...)` left a refused alarm as an
  // unhandled rejection.
  it("reports an alarm that storage refuses to set or delete, instead of leaving it unhandled", async () => {
    const reported: [string, string][] = [];
    const clock = new AlarmClock(
      {
        setAlarm: () => Promise.reject(new Error("storage is gone")),
        deleteAlarm: () => Promise.reject(new Error("storage is still gone")),
      },
      (what, err) => reported.push([what, String(err)]),
    );
    const timer = clock.setTimer(() => {}, 1000);
    clock.clearTimer(timer);
    await sleep(0);
    expect(reported).toEqual([
      ["setAlarm", "Error: storage is gone"],
      ["deleteAlarm", "Error: storage is still gone"],
    ]);
  });
});
