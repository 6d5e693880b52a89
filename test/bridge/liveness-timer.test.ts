import { afterEach, describe, expect, it } from "vitest";
import { Liveness } from "../../src/bridge/client/liveness.js";
import { sleep, until } from "../support/wait.js";

// The client's liveness timer alone, on real timers, fed what the channel would feed it. Over
// real sockets (test/bridge/liveness.test.ts) the client's own upload cannot be held in its
// send buffer on purpose: loopback's kernel buffers take megabytes at once.

const INTERVAL_MS = 30;
const TIMEOUT_MS = 500;

/** A channel as Liveness sees it: calls running or not, bytes that left, Pings and a verdict. */
function fakeChannel() {
  const ch = {
    running: true,
    departed: 0,
    pings: 0,
    dead: undefined as string | undefined,
    /** The Ping's two bytes leave the send buffer only later, as in a browser. */
    pingDeparts: () => {
      ch.departed += 2;
    },
  };
  const liveness = new Liveness(
    {
      running: () => ch.running,
      departed: () => ch.departed,
      ping: () => {
        ch.pings++;
        setTimeout(ch.pingDeparts, 1);
        return 2;
      },
      dead: (why) => {
        ch.dead = why;
      },
    },
    { intervalMs: INTERVAL_MS, timeoutMs: TIMEOUT_MS },
  );
  return { ch, liveness };
}

describe("Liveness (the bridge client's probe timer)", () => {
  const started: Liveness[] = [];
  afterEach(() => {
    for (const l of started.splice(0)) l.stop();
  });
  function make() {
    const made = fakeChannel();
    started.push(made.liveness);
    return made;
  }

  it("no frame after the Ping: dead once the timeout passed, after one Ping", async () => {
    const { ch, liveness } = make();
    const t0 = performance.now();
    liveness.callStarted();
    await until(() => ch.dead !== undefined, "the verdict");
    expect(performance.now() - t0).toBeGreaterThanOrEqual(INTERVAL_MS + TIMEOUT_MS - 5);
    expect(ch.pings).toBe(1);
    expect(ch.dead).toMatch(/^no frame from the server for \d+ ms, none within 500 ms of a ping$/);
  });

  it("any frame answers: a socket that keeps bringing frames is never judged", async () => {
    const { ch, liveness } = make();
    liveness.callStarted();
    // A frame after every Ping (a Pong).
    let seen = 0;
    const answer = setInterval(() => {
      if (ch.pings > seen) {
        seen = ch.pings;
        liveness.heard();
      }
    }, 5);
    // Each Ping after the first follows a check that found the last one answered.
    await until(() => ch.pings >= 4, "three answered Pings");
    clearInterval(answer);
    expect(ch.dead).toBeUndefined();
    await until(() => ch.dead !== undefined, "the verdict once frames stop");
  });

  it("while the client's own frames leave (a big chunk on a slow uplink), the wait starts again", async () => {
    const { ch, liveness } = make();
    liveness.callStarted();
    await until(() => ch.pings === 1, "the Ping");
    // Bytes ahead of the Ping keep leaving for three timeouts.
    const upload = setInterval(() => {
      ch.departed += 1000;
    }, 20);
    await sleep(3 * TIMEOUT_MS);
    clearInterval(upload);
    expect(ch.dead).toBeUndefined();
    await until(() => ch.dead !== undefined, "the verdict once the upload stalls");
    expect(ch.pings).toBe(1);
  });

  it("a frame that arrived while the process was busy past the timeout is read before the verdict", async () => {
    const { ch, liveness } = make();
    liveness.callStarted();
    await until(() => ch.pings === 1, "the Ping");
    // The answer is read only after the timers that fall due meanwhile (setImmediate runs after
    // Node's timer phase, as a socket's data does), and the process is busy past the timeout.
    setImmediate(() => liveness.heard());
    const busyUntil = performance.now() + TIMEOUT_MS + 100;
    while (performance.now() < busyUntil) {
      // busy
    }
    await sleep(2 * INTERVAL_MS);
    expect(ch.dead).toBeUndefined();
  });

  it("no call running: no Ping at all; the next call probes a socket quiet for an interval at once", async () => {
    const { ch, liveness } = make();
    ch.running = false;
    liveness.callStarted();
    await sleep(5 * INTERVAL_MS);
    expect(ch.pings).toBe(0);
    ch.running = true;
    liveness.callStarted();
    expect(ch.pings).toBe(1);
    liveness.heard();
    ch.running = false;
    // The answer came and the call ended: watching stops, nothing more is sent.
    await sleep(TIMEOUT_MS + 2 * INTERVAL_MS);
    expect(ch.pings).toBe(1);
    expect(ch.dead).toBeUndefined();
  });

  it("stopped (the socket is gone): no Ping, no verdict", async () => {
    const { ch, liveness } = make();
    liveness.callStarted();
    await until(() => ch.pings === 1, "the Ping");
    liveness.stop();
    await sleep(TIMEOUT_MS + 2 * INTERVAL_MS);
    expect(ch.dead).toBeUndefined();
    expect(ch.pings).toBe(1);
  });
});
