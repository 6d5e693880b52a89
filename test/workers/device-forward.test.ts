import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { describe, expect, it } from "vitest";
import { type RequestPhase, StreamingService } from "../../src/gen/streaming_pb.js";
import worker from "../../src/runtimes/cloudflare/worker.js";
import {
  client,
  collect,
  commit,
  deviceStub,
  newDevice,
  streamAudio,
  swapInFreshInstance,
} from "./helpers.js";

/** Makes the device object's fetch answer with `fetch` from now on (a broken object). */
async function breakObject(hw: string, fetch: () => Promise<Response>): Promise<void> {
  await runInDurableObject(deviceStub(hw), (instance) => {
    instance.fetch = fetch;
  });
}

// The Worker checks each call and forwards its request to its device's object, which runs
// the same router as every runtime (device-forward.ts).
describe("the Worker forwards calls to the device's object", () => {
  it("ptt-turn-id is a response header, there before the first reply frame", async () => {
    const hw = newDevice("turn-header");
    const sid = crypto.randomUUID();
    expect((await streamAudio(collect(hw, sid, 1, "One. Two."))).code).toBeUndefined();
    let header: string | null | undefined;
    let trailers = new Headers();
    const seen: (string | null | undefined)[] = [];
    for await (const _ of client.streamAudio(commit(hw, sid), {
      onHeader: (h) => {
        header = h.get("ptt-turn-id");
      },
      onTrailer: (t) => {
        trailers = t;
      },
    })) {
      seen.push(header);
    }
    expect(header).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen[0]).toBe(header);
    expect(trailers.get("ptt-turn-id")).toBeNull();
    expect(trailers.get("ptt-commit-ms")).toMatch(/^[0-9.]+$/);
  });

  // Regression (was a defect): a failed call's CallEnd metadata were set as trailers and
  // again as the error's metadata, which connect appends: "ptt-turn-id: abc, abc".
  it("a reply that ends in an error carries each trailer once", async () => {
    const hw = newDevice("trailers");
    await swapInFreshInstance(hw, { PTT_ECHO_DELAY_MS: "200" });
    const sid = crypto.randomUUID();
    let trailers = new Headers();
    let error: ConnectError | undefined;
    try {
      for await (const res of client.streamAudio(
        { ...commit(hw, sid), prompt: "One. Two. Three." },
        { onTrailer: (t) => (trailers = t) },
      )) {
        if (res.content.case === "textChunk") await client.interruptSession({ hardwareId: hw });
      }
    } catch (err) {
      error = ConnectError.from(err);
    }
    expect(error?.code).toBe(Code.Canceled);
    const metadata = [...trailers.keys()].length > 0 ? trailers : (error?.metadata ?? trailers);
    expect(metadata.get("ptt-turn-id")).toMatch(/^[0-9a-f-]{36}$/);
    expect(metadata.get("ptt-commit-ms")).toMatch(/^[0-9.]+$/);
  });

  // Regression (was a defect): the object was only called on the first read of the
  // forwarded stream, outside the handler's error handling: no error_message frame.
  it("an object that answers HTTP 500: one error_message frame, then UNAVAILABLE", async () => {
    const hw = newDevice("http-500");
    await breakObject(hw, async () => new Response("broken\n", { status: 500 }));
    const r = await streamAudio(collect(hw, crypto.randomUUID(), 1, "lost"));
    expect(r.code).toBe(Code.Unavailable);
    expect(r.message).toBe("device object answered HTTP 500");
    expect(r.frames).toEqual([{ case: "errorMessage", value: r.message }]);
  });

  it("an object whose fetch throws: one error_message frame, then UNAVAILABLE", async () => {
    const hw = newDevice("throws");
    await breakObject(hw, async () => {
      throw new Error("the object crashed");
    });
    const r = await streamAudio(collect(hw, crypto.randomUUID(), 1, "lost"));
    expect(r.code).toBe(Code.Unavailable);
    expect(r.message).toContain("the object crashed");
    expect(r.frames).toEqual([{ case: "errorMessage", value: r.message }]);
  });

  // Regression (was a defect): the Worker checked the token before session_id and phase,
  // so with auth on a malformed request got UNAUTHENTICATED here and INVALID_ARGUMENT on
  // every other runtime (docs/protocol.md §2: validation first).
  describe("with auth on: validation first, then the token, as on every runtime", () => {
    const authEnv = { ...env, PTT_AUTH_TOKENS: "auth-device=secret-token" };
    const authed = (token?: string) =>
      createClient(
        StreamingService,
        createConnectTransport({
          baseUrl: "https://ptt.test",
          fetch: ((input: RequestInfo | URL, init?: RequestInit) => {
            const req = new Request(input, { ...init, redirect: "manual" });
            if (token) req.headers.set("authorization", `Bearer ${token}`);
            return worker.fetch(req, authEnv);
          }) as typeof globalThis.fetch,
        }),
      );

    async function code(
      c: ReturnType<typeof authed>,
      req: Parameters<typeof client.streamAudio>[0],
    ) {
      try {
        for await (const _ of c.streamAudio(req)) {
          // drain
        }
        return { code: undefined, message: "" };
      } catch (err) {
        const e = ConnectError.from(err);
        return { code: e.code, message: e.rawMessage };
      }
    }

    it.each([
      ["a malformed session_id", { sessionId: "not-a-uuid" }, /^session_id: /],
      ["an unknown phase", { phase: 99 as RequestPhase }, /^phase: unknown value 99/],
      ["a negative chunk_seq", { chunkSeq: -1 }, /^chunk_seq: /],
    ])("%s without a token: INVALID_ARGUMENT", async (_what, bad, message) => {
      const r = await code(authed(), {
        ...collect("auth-device", crypto.randomUUID(), 1, "x"),
        ...bad,
      });
      expect(r.code).toBe(Code.InvalidArgument);
      expect(r.message).toMatch(message);
    });

    it("a valid request: without a token UNAUTHENTICATED; another device's token PERMISSION_DENIED; its own accepted", async () => {
      const req = { ...collect("auth-device", crypto.randomUUID(), 1, "x") };
      expect((await code(authed(), req)).code).toBe(Code.Unauthenticated);
      const other = { ...req, hardwareId: "someone-else" };
      expect((await code(authed("secret-token"), other)).code).toBe(Code.PermissionDenied);
      expect((await code(authed("secret-token"), req)).code).toBeUndefined();
    });
  });
});
