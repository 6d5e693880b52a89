import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT } from "jose";

/** The issuer and audience every test token carries unless a case says otherwise. */
export const ISSUER = "https://issuer.ptt.test";
export const AUDIENCE = "ptt-edge-test";
/** An HS256 secret of 32 bytes (the shortest PTT_JWT_SECRET accepts). */
export const SECRET = "test-secret-0123456789abcdefghij";

export interface JwtIssuer {
  /** PTT_JWKS_URL: a real HTTP server on loopback serving the public keys. */
  readonly jwksUrl: string;
  /** How many times the key set was fetched. */
  readonly fetches: number;
  /** HS256 with SECRET (or `secret`). */
  hs256(claims: JWTPayload, options?: SignOptions & { secret?: string }): Promise<string>;
  /** Signed with the RS256 / ES256 key the JWKS serves (or one it does not, `unknownKey`). */
  signed(alg: "RS256" | "ES256", claims: JWTPayload, options?: SignOptions): Promise<string>;
  close(): Promise<void>;
}

interface SignOptions {
  /** Seconds from now; default 300. */
  expiresIn?: number;
  issuer?: string;
  audience?: string;
  /** Sign with a fresh key the JWKS does not list (same kid: a forgery). */
  unknownKey?: boolean;
}

/** An identity provider for tests: signs tokens and serves its JWKS over HTTP on 127.0.0.1. */
export async function startJwtIssuer(): Promise<JwtIssuer> {
  const keys = {
    RS256: await generateKeyPair("RS256", { extractable: true }),
    ES256: await generateKeyPair("ES256", { extractable: true }),
  };
  const jwks: JWK[] = [];
  for (const [alg, pair] of Object.entries(keys)) {
    jwks.push({ ...(await exportJWK(pair.publicKey)), kid: `kid-${alg}`, alg, use: "sig" });
  }
  let fetches = 0;
  const server = http.createServer((req, res) => {
    fetches++;
    if (req.url !== "/.well-known/jwks.json") return void res.writeHead(404).end();
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: jwks }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  const build = (claims: JWTPayload, o: SignOptions) => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT(claims)
      .setIssuedAt(now)
      .setExpirationTime(now + (o.expiresIn ?? 300))
      .setIssuer(o.issuer ?? ISSUER)
      .setAudience(o.audience ?? AUDIENCE);
  };
  return {
    jwksUrl: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    get fetches() {
      return fetches;
    },
    hs256: (claims, o = {}) =>
      build(claims, o)
        .setProtectedHeader({ alg: "HS256", typ: "JWT" })
        .sign(new TextEncoder().encode(o.secret ?? SECRET)),
    async signed(alg, claims, o = {}) {
      const key = o.unknownKey ? (await generateKeyPair(alg)).privateKey : keys[alg].privateKey;
      return build(claims, o)
        .setProtectedHeader({ alg, kid: `kid-${alg}`, typ: "JWT" })
        .sign(key);
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
