import { afterEach, describe, expect, it, vi } from "vitest";
import { createAuthenticator, type JwtSettings } from "../../src/core/auth.js";

// The verified-token cache of createAuthenticator, through the JwtVerifier port with a
// verifier that counts its calls (jose's own checks are tested over real transports).
const SETTINGS: JwtSettings = { secret: "x".repeat(32), deviceClaim: "sub", clockToleranceSec: 30 };
const TOKEN = "aGVhZGVy.cGF5bG9hZA.c2ln";
const bearer = (t: string) => new Headers({ authorization: `Bearer ${t}` });

function counting(exp: () => number) {
  const calls: string[] = [];
  const auth = createAuthenticator({ apiKeys: [], jwt: SETTINGS }, () => async (token) => {
    calls.push(token);
    return { sub: "desk-1", exp: exp() };
  });
  return { auth, calls };
}

afterEach(() => {
  vi.useRealTimers();
});

describe("verified JWTs are not verified again on every call", () => {
  it("the same token: verified once, for at most a minute", async () => {
    vi.useFakeTimers({ now: Date.UTC(2026, 0, 1), toFake: ["Date"] });
    const { auth, calls } = counting(() => Math.floor(Date.now() / 1000) + 3600);
    for (let i = 0; i < 5; i++) expect(await auth(bearer(TOKEN))).toBe("desk-1");
    expect(calls).toHaveLength(1);
    vi.advanceTimersByTime(59_000);
    await auth(bearer(TOKEN));
    expect(calls).toHaveLength(1);
    vi.advanceTimersByTime(2_000);
    await auth(bearer(TOKEN));
    expect(calls).toHaveLength(2);
  });

  it("never past the token's exp (plus the skew)", async () => {
    vi.useFakeTimers({ now: Date.UTC(2026, 0, 1), toFake: ["Date"] });
    const start = Math.floor(Date.now() / 1000);
    const { auth, calls } = counting(() => start + 5);
    await auth(bearer(TOKEN));
    vi.advanceTimersByTime(34_000);
    await auth(bearer(TOKEN));
    expect(calls).toHaveLength(1);
    vi.advanceTimersByTime(2_000);
    await auth(bearer(TOKEN));
    expect(calls).toHaveLength(2);
  });

  it("a token that failed is checked again every time (failures are not kept)", async () => {
    let n = 0;
    const auth = createAuthenticator({ apiKeys: [], jwt: SETTINGS }, () => async () => {
      n++;
      throw new Error("bad signature");
    });
    for (let i = 0; i < 3; i++) await expect(auth(bearer(TOKEN))).rejects.toThrow();
    expect(n).toBe(3);
  });
});
