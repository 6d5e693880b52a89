import { env } from "cloudflare:workers";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import { StreamingService } from "../../src/gen/streaming_pb.js";
import worker from "../../src/runtimes/cloudflare/worker.js";
import { collect, commit, newDevice } from "./helpers.js";

// JWT auth in workerd: jose verifies with WebCrypto inside the Worker, as on Node, Bun, Deno.
const SECRET = "workers-secret-0123456789abcdefg";
const jwtEnv = { ...env, PTT_JWT_SECRET: SECRET, PTT_JWT_AUDIENCE: "ptt-workers" };

function clientWith(token?: string) {
  return createClient(
    StreamingService,
    createConnectTransport({
      baseUrl: "https://ptt.test",
      fetch: ((input: RequestInfo | URL, init?: RequestInit) => {
        const req = new Request(input, { ...init, redirect: "manual" });
        if (token) req.headers.set("authorization", `Bearer ${token}`);
        return worker.fetch(req, jwtEnv);
      }) as typeof globalThis.fetch,
    }),
  );
}

function token(sub: string, o: { audience?: string; expiresIn?: number } = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ sub })
    .setProtectedHeader({ alg: "HS256" })
    .setAudience(o.audience ?? "ptt-workers")
    .setExpirationTime(now + (o.expiresIn ?? 300))
    .sign(new TextEncoder().encode(SECRET));
}

async function run(c: ReturnType<typeof clientWith>, req: Parameters<typeof c.streamAudio>[0]) {
  let text = "";
  try {
    for await (const res of c.streamAudio(req)) {
      if (res.content.case === "textChunk") text += res.content.value;
    }
    return { code: undefined, message: "", text };
  } catch (err) {
    const e = ConnectError.from(err);
    return { code: e.code, message: e.rawMessage, text };
  }
}

describe("JWT auth on Workers (PTT_JWT_SECRET)", () => {
  it("its own token: COLLECT and COMMIT; none, expired, wrong audience: UNAUTHENTICATED; another device: PERMISSION_DENIED", async () => {
    const device = newDevice("jwt");
    const session = crypto.randomUUID();
    const mine = clientWith(await token(device));
    expect((await run(mine, collect(device, session, 1, "hello workers"))).code).toBeUndefined();
    const reply = await run(mine, commit(device, session));
    expect(reply).toEqual({ code: undefined, message: "", text: "hello workers" });

    const fresh = collect(device, crypto.randomUUID(), 1, "x");
    expect(await run(clientWith(), fresh)).toMatchObject({
      code: Code.Unauthenticated,
      message: "authorization: a valid bearer token is required",
    });
    expect(await run(clientWith(await token(device, { expiresIn: -120 })), fresh)).toMatchObject({
      code: Code.Unauthenticated,
      message: "authorization: the token expired",
    });
    expect(await run(clientWith(await token(device, { audience: "other" })), fresh)).toMatchObject({
      code: Code.Unauthenticated,
      message: 'authorization: token claim "aud" does not match',
    });
    const other = collect(newDevice("jwt-other"), crypto.randomUUID(), 1, "x");
    expect((await run(mine, other)).code).toBe(Code.PermissionDenied);
  });
});
