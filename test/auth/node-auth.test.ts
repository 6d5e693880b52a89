import { createHash } from "node:crypto";
import {
  Code,
  ConnectError,
  createClient,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { createJoseVerifier } from "../../src/auth/jose-verifier.js";
import type { WebSocketFactory } from "../../src/bridge/client/channel.js";
import { connect } from "../../src/bridge/client/index.js";
import { configFromEnv } from "../../src/core/env-config.js";
import { StreamingService } from "../../src/gen/streaming_pb.js";
import { type NodeServer, startNodeServer } from "../../src/runtimes/node/server.js";
import {
  collect,
  commit,
  newDevice,
  newSession,
  replyText,
  streamAudio,
} from "../contract/calls.js";
import { AUDIENCE, ISSUER, type JwtIssuer, SECRET, startJwtIssuer } from "../support/jwt-issuer.js";

const Ws = WebSocket as unknown as WebSocketFactory;

// Authentication over real transports: a Node server with API keys (stored as SHA-256),
// HS256 tokens and RS256 / ES256 tokens whose keys come from a JWKS served on loopback.
const API_KEY = "k3y-for-the-api-device";
const API_DEVICE = "api-device";

let issuer: JwtIssuer;
let server: NodeServer;

beforeAll(async () => {
  issuer = await startJwtIssuer();
  const digest = createHash("sha256").update(API_KEY).digest("hex");
  const config = configFromEnv(
    {
      PTT_AUTH_TOKENS: `${API_DEVICE}=sha256:${digest}`,
      PTT_JWT_SECRET: SECRET,
      PTT_JWKS_URL: issuer.jwksUrl,
      PTT_JWT_ISSUER: ISSUER,
      PTT_JWT_AUDIENCE: AUDIENCE,
    },
    "other",
    { jwtVerifier: createJoseVerifier },
  );
  server = await startNodeServer({ port: 0, config: config.core, graceMs: 0 });
});
afterAll(async () => {
  await server?.close(0);
  await issuer?.close();
});

const transports: Record<string, (baseUrl: string, interceptors: Interceptor[]) => Transport> = {
  grpc: (baseUrl, interceptors) => createGrpcTransport({ baseUrl, interceptors }),
  "connect-h1": (baseUrl, interceptors) =>
    createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors }),
  "grpc-web": (baseUrl, interceptors) =>
    createGrpcWebTransport({ baseUrl, httpVersion: "1.1", interceptors }),
};

/** A client of `transport` that sends `Authorization: Bearer <token>` on every call. */
function clientWith(transport: string, token?: string) {
  const bearer: Interceptor = (next) => (req) => {
    if (token !== undefined) req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  const make = transports[transport];
  if (!make) throw new Error(transport);
  const client = createClient(StreamingService, make(server.url, [bearer]));
  return {
    collect: (device: string, session = newSession()) =>
      streamAudio(client, collect(device, session, 1, "hello there")),
    async commitAfterCollect(device: string) {
      const session = newSession();
      expect((await streamAudio(client, collect(device, session, 1, "hello there"))).code).toBe(
        undefined,
      );
      return streamAudio(client, commit(device, session));
    },
    interrupt: (device: string) => client.interruptSession({ hardwareId: device }),
  };
}

for (const name of Object.keys(transports)) {
  describe(`auth over node/${name}`, () => {
    it("no token: UNAUTHENTICATED, with the error_message frame old clients read", async () => {
      const r = await clientWith(name).collect(newDevice("anon"));
      expect(r.code).toBe(Code.Unauthenticated);
      expect(r.message).toBe("authorization: a valid bearer token is required");
      expect(r.frames).toEqual([
        { case: "errorMessage", value: "authorization: a valid bearer token is required" },
      ]);
    });

    it("an HS256 token for the device: COLLECT and COMMIT go through", async () => {
      const device = newDevice("hs");
      const token = await issuer.hs256({ sub: device });
      const r = await clientWith(name, token).commitAfterCollect(device);
      expect(r.code).toBeUndefined();
      expect(replyText(r)).toBe("hello there");
    });

    it("RS256 and ES256 tokens verified with the JWKS keys", async () => {
      for (const alg of ["RS256", "ES256"] as const) {
        const device = newDevice(alg);
        const token = await issuer.signed(alg, { sub: device });
        const r = await clientWith(name, token).collect(device);
        expect(r.code, alg).toBeUndefined();
      }
    });

    it("a token of another device: PERMISSION_DENIED, on StreamAudio and InterruptSession", async () => {
      const mine = newDevice("mine");
      const token = await issuer.hs256({ sub: mine });
      const other = newDevice("other");
      const r = await clientWith(name, token).collect(other);
      expect(r.code).toBe(Code.PermissionDenied);
      expect(r.message).toBe(`authorization: the token does not allow hardware_id ${other}`);
      const err = await clientWith(name, token)
        .interrupt(other)
        .catch((e) => ConnectError.from(e));
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.PermissionDenied);
      const ok = await clientWith(name, token).interrupt(mine);
      expect(ok.success).toBe(true);
    });

    it("the API key (configured as its SHA-256) names its device; the digest itself is no key", async () => {
      expect((await clientWith(name, API_KEY).collect(API_DEVICE)).code).toBeUndefined();
      const digest = createHash("sha256").update(API_KEY).digest("hex");
      for (const wrong of [digest, `sha256:${digest}`, `${API_KEY}x`, API_KEY.slice(0, -1)]) {
        expect((await clientWith(name, wrong).collect(API_DEVICE)).code, wrong).toBe(
          Code.Unauthenticated,
        );
      }
    });
  });
}

describe("auth: what a token must be (node/grpc)", () => {
  const device = newDevice("claims");
  const expectRefused = async (token: string, message: string) => {
    const r = await clientWith("grpc", token).collect(device);
    expect(r.code, message).toBe(Code.Unauthenticated);
    expect(r.message).toBe(message);
  };

  it("expired beyond the 30 s clock skew: refused; within it: accepted", async () => {
    await expectRefused(
      await issuer.hs256({ sub: device }, { expiresIn: -60 }),
      "authorization: the token expired",
    );
    const late = await issuer.hs256({ sub: device }, { expiresIn: -10 });
    expect((await clientWith("grpc", late).collect(device)).code).toBeUndefined();
  });

  it("wrong issuer or audience: refused, naming the claim", async () => {
    await expectRefused(
      await issuer.hs256({ sub: device }, { issuer: "https://evil.test" }),
      'authorization: token claim "iss" does not match',
    );
    await expectRefused(
      await issuer.hs256({ sub: device }, { audience: "another-app" }),
      'authorization: token claim "aud" does not match',
    );
  });

  it("a bad signature, an unknown key, alg none and HS256 with the public key: refused", async () => {
    await expectRefused(
      await issuer.hs256({ sub: device }, { secret: "another-secret-0123456789abcdefgh" }),
      "authorization: the token's signature does not verify",
    );
    await expectRefused(
      await issuer.signed("ES256", { sub: device }, { unknownKey: true }),
      "authorization: the token's signature does not verify",
    );
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const exp = Math.floor(Date.now() / 1000) + 300;
    const claims = b64({ sub: device, exp, iss: ISSUER, aud: AUDIENCE });
    await expectRefused(
      `${b64({ alg: "none" })}.${claims}.`,
      "authorization: the token's algorithm is not accepted",
    );
    await expectRefused(
      `${b64({ alg: "HS512" })}.${claims}.c2ln`,
      "authorization: the token's algorithm is not accepted",
    );
    await expectRefused("not.a.jwt", "authorization: the token is not a valid JWT");
  });

  it("a token without exp or without a subject: refused", async () => {
    await expectRefused(
      await issuer.hs256({}),
      'authorization: the token has no "sub" claim naming a device',
    );
    // Signed, but no exp: a token that never expires is not accepted.
    const forever = await new SignJWT({ sub: device })
      .setProtectedHeader({ alg: "HS256" })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .sign(new TextEncoder().encode(SECRET));
    await expectRefused(forever, 'authorization: token claim "exp" is missing');
  });

  it("the JWKS is fetched once and cached, not per call", async () => {
    const before = issuer.fetches;
    for (let i = 0; i < 5; i++) {
      const d = newDevice("cache");
      const r = await clientWith("grpc", await issuer.signed("RS256", { sub: d })).collect(d);
      expect(r.code).toBeUndefined();
    }
    expect(issuer.fetches - before).toBe(0);
    expect(issuer.fetches).toBe(1);
  });
});

describe("auth over the bridge (real ws, token in the subprotocol)", () => {
  const bridgeUrl = () => `${server.url.replace("http", "ws")}/v1/bridge`;

  it("a JWT for the device: COLLECT acked, COMMIT replies; another device: permission_denied", async () => {
    const device = newDevice("bridge");
    const token = await issuer.signed("ES256", { sub: device });
    const ptt = connect(bridgeUrl(), { hardwareId: device, token, WebSocket: Ws });
    try {
      const hold = ptt.hold();
      expect((await hold.text("over the bridge")).outcome).toBe("accepted");
      const reply = await hold.release();
      let text = "";
      for await (const part of reply) if (part.kind === "text") text += part.text;
      expect((await reply.done).error).toBeUndefined();
      expect(text).toBe("over the bridge");
    } finally {
      ptt.close();
    }
    const thief = connect(bridgeUrl(), { hardwareId: newDevice("victim"), token, WebSocket: Ws });
    try {
      const err = await thief
        .hold()
        .text("x")
        .catch((e) => ConnectError.from(e));
      expect((err as ConnectError).code).toBe(Code.PermissionDenied);
    } finally {
      thief.close();
    }
  });

  it("no token, or an expired one: unauthenticated", async () => {
    const device = newDevice("bridge-anon");
    const expired = await issuer.hs256({ sub: device }, { expiresIn: -120 });
    for (const token of [undefined, expired]) {
      const ptt = connect(bridgeUrl(), { hardwareId: device, token, WebSocket: Ws });
      try {
        const err = await ptt
          .hold()
          .text("x")
          .catch((e) => ConnectError.from(e));
        expect((err as ConnectError).code, String(token)).toBe(Code.Unauthenticated);
      } finally {
        ptt.close();
      }
    }
  });
});
