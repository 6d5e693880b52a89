import { createHash } from "node:crypto";
import * as net from "node:net";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createJoseVerifier } from "../../src/auth/jose-verifier.js";
import { authorize } from "../../src/core/auth.js";
import { configFromEnv } from "../../src/core/env-config.js";
import { AUDIENCE, type JwtIssuer, SECRET, startJwtIssuer } from "../support/jwt-issuer.js";

const deps = { jwtVerifier: createJoseVerifier };
const bearer = (token: string) => new Headers({ authorization: `Bearer ${token}` });

async function codeOf(p: Promise<unknown>): Promise<Code | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

let issuer: JwtIssuer;
beforeAll(async () => {
  issuer = await startJwtIssuer();
});
afterAll(() => issuer?.close());

describe("auth settings (PTT_JWT_*, PTT_AUTH_TOKENS)", () => {
  it("refuses settings that would leave auth weaker than meant, naming the variable", () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ PTT_JWT_SECRET: "short" }, /^PTT_JWT_SECRET: must be at least 32 bytes/],
      [
        { PTT_JWKS_URL: "http://keys.example/jwks.json", PTT_JWT_AUDIENCE: "a" },
        /^PTT_JWKS_URL: must be https/,
      ],
      [{ PTT_JWKS_URL: "not a url", PTT_JWT_AUDIENCE: "a" }, /^PTT_JWKS_URL: not a URL/],
      [
        { PTT_JWKS_URL: "https://idp.example/jwks.json" },
        /^PTT_JWT_AUDIENCE: required with PTT_JWKS_URL/,
      ],
      [{ PTT_JWT_ISSUER: "https://idp.example" }, /^PTT_JWT_ISSUER: has no effect without/],
      [{ PTT_JWT_DEVICE_CLAIM: "device" }, /^PTT_JWT_DEVICE_CLAIM: has no effect without/],
      [
        { PTT_JWT_SECRET: SECRET, PTT_JWT_DEVICE_CLAIM: "a b" },
        /^PTT_JWT_DEVICE_CLAIM: not a claim name/,
      ],
      [
        { PTT_AUTH_TOKENS: "unknown=tok" },
        /^PTT_AUTH_TOKENS: hardware_id: must identify the device/,
      ],
      [{ PTT_AUTH_TOKENS: "hw1" }, /^PTT_AUTH_TOKENS: expected/],
      [{ PTT_JWT_SECRETS: SECRET }, /^PTT_JWT_SECRETS: unknown setting/],
    ];
    for (const [env, error] of cases) {
      expect(() => configFromEnv(env, "other", deps), JSON.stringify(env)).toThrow(error);
    }
  });

  it("a JWT setting on an entry point without a verifier fails the start (never auth off)", () => {
    expect(() => configFromEnv({ PTT_JWT_SECRET: SECRET })).toThrow(/no JWT verifier/);
    expect(configFromEnv({ PTT_JWT_SECRET: SECRET }, "other", deps).core.auth).toBeTypeOf(
      "function",
    );
    expect(configFromEnv({}, "other", deps).core.auth).toBeUndefined();
  });

  it("https JWKS URLs, and http on loopback, are accepted", () => {
    for (const url of [
      "https://idp.example/jwks.json",
      "http://127.0.0.1:9/k",
      "http://localhost/k",
      "http://[::1]:8/k",
    ]) {
      expect(
        () => configFromEnv({ PTT_JWKS_URL: url, PTT_JWT_AUDIENCE: "a" }, "other", deps),
        url,
      ).not.toThrow();
    }
  });

  it("PTT_AUTH_TOKENS takes plain keys and sha256:<hex> digests (any case)", async () => {
    const digest = createHash("sha256").update("s3cret==").digest("hex").toUpperCase();
    const auth = configFromEnv(
      { PTT_AUTH_TOKENS: `hw1=plain-key, hw2 = SHA256:${digest}` },
      "other",
      deps,
    ).core.auth;
    expect(await auth?.(bearer("plain-key"))).toBe("hw1");
    expect(await auth?.(bearer("s3cret=="))).toBe("hw2");
    expect(await auth?.(bearer(digest))).toBeNull();
    expect(await auth?.(new Headers({ authorization: "Basic aHcxOnBsYWluLWtleQ==" }))).toBeNull();
    expect(await auth?.(new Headers({ authorization: `Bearer ${"x".repeat(10_000)}` }))).toBeNull();
  });

  it("PTT_JWT_DEVICE_CLAIM names the claim that must equal hardware_id", async () => {
    const auth = configFromEnv(
      { PTT_JWT_SECRET: SECRET, PTT_JWT_DEVICE_CLAIM: "device_id" },
      "other",
      deps,
    ).core.auth;
    const token = await issuer.hs256({ sub: "user-7", device_id: "desk-1" });
    await authorize(auth, bearer(token), "desk-1");
    expect(await codeOf(authorize(auth, bearer(token), "user-7"))).toBe(Code.PermissionDenied);
  });
});

describe("JWKS that cannot be fetched", () => {
  it("UNAVAILABLE (retry), not UNAUTHENTICATED; and no fetch per call while it is down", async () => {
    // A JWKS host that hangs up on every connection, counting them.
    let connections = 0;
    const broken = net.createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((r) => broken.listen(0, "127.0.0.1", r));
    const port = (broken.address() as net.AddressInfo).port;
    try {
      const auth = configFromEnv(
        { PTT_JWKS_URL: `http://127.0.0.1:${port}/jwks.json`, PTT_JWT_AUDIENCE: AUDIENCE },
        "other",
        deps,
      ).core.auth;
      const token = await issuer.signed("RS256", { sub: "desk-2" });
      const err = await authorize(auth, bearer(token), "desk-2").catch((e) => ConnectError.from(e));
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.Unavailable);
      expect((err as ConnectError).rawMessage).toMatch(
        /signing keys \(PTT_JWKS_URL\) cannot be fetched/,
      );
      const tried = connections;
      expect(tried).toBeGreaterThan(0);
      // Within the retry pause the answer comes without another connection.
      for (let i = 0; i < 5; i++) {
        expect(await codeOf(authorize(auth, bearer(token), "desk-2"))).toBe(Code.Unavailable);
      }
      expect(connections).toBe(tried);
    } finally {
      await new Promise((r) => broken.close(r));
    }
  });

  it("a JWKS answering 500 is UNAVAILABLE too", async () => {
    const auth = configFromEnv(
      {
        PTT_JWKS_URL: issuer.jwksUrl.replace("/.well-known/jwks.json", "/nope"),
        PTT_JWT_AUDIENCE: AUDIENCE,
      },
      "other",
      deps,
    ).core.auth;
    const token = await issuer.signed("ES256", { sub: "desk-3" });
    expect(await codeOf(authorize(auth, bearer(token), "desk-3"))).toBe(Code.Unavailable);
  });
});
