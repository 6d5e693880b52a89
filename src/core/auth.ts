import { Code, ConnectError } from "@connectrpc/connect";
import { permissionDenied, unauthenticated } from "./errors.js";

/**
 * Maps a request's credentials to the hardware id they may act for, or null when
 * there are none. May throw a ConnectError that says why a token was refused
 * (UNAUTHENTICATED) or could not be checked (UNAVAILABLE). Async so it can ask a service.
 */
export type Authenticator = (headers: Headers) => Promise<string | null>;

/**
 * The JWT port: verifies a compact JWS's signature and registered claims (alg, exp, nbf,
 * iss, aud) and resolves to its payload, or rejects with a ConnectError. Core stays free
 * of a JOSE library; src/auth/jose-verifier.ts implements it with `jose`.
 */
export type JwtVerifier = (token: string) => Promise<Readonly<Record<string, unknown>>>;

/** What a JwtVerifier is built from (PTT_JWT_SECRET, PTT_JWKS_URL, PTT_JWT_ISSUER, ...). */
export interface JwtSettings {
  /** HS256 key (its UTF-8 bytes, at least 32). */
  readonly secret?: string;
  /** RS256 / ES256 keys, fetched and cached. */
  readonly jwksUrl?: string;
  readonly issuer?: string;
  readonly audience?: string;
  /** The claim that must equal the request's hardware_id. */
  readonly deviceClaim: string;
  /** Seconds of clock skew allowed on exp / nbf / iat. */
  readonly clockToleranceSec: number;
}

export type JwtVerifierFactory = (settings: JwtSettings) => JwtVerifier;

/**
 * An API key of PTT_AUTH_TOKENS: the device it acts for, and the key's SHA-256 (the
 * `sha256:<hex>` form, so the config holds no usable secret) or the key itself (hashed on
 * first use; the plain form of earlier releases).
 */
export interface ApiKey {
  readonly hardwareId: string;
  readonly key: { readonly sha256: Uint8Array } | { readonly plain: string };
}

interface KeyDigest {
  readonly hardwareId: string;
  readonly sha256: Uint8Array;
}

/** Everything auth is built from; absent: auth off. */
export interface AuthSettings {
  readonly apiKeys: readonly ApiKey[];
  readonly jwt?: JwtSettings;
}

const BEARER = /^Bearer[ \t]+([\x21-\x7e]+)[ \t]*$/i;
// A compact JWS: three base64url parts. Anything else is never handed to the verifier.
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
/** Longer bearer tokens are refused before any hashing or parsing. */
const MAX_TOKEN_CHARS = 8192;

/** The token of an `Authorization: Bearer <token>` header, or null. */
export function bearerToken(headers: Headers): string | null {
  const value = headers.get("authorization");
  if (value === null || value.length > MAX_TOKEN_CHARS + 16) return null;
  return BEARER.exec(value)?.[1] ?? null;
}

/**
 * API keys and JWTs, either or both: a bearer token that is one of the API keys names its
 * device; otherwise, with JWTs on, a token shaped like a JWT must verify and its device
 * claim names the device. Keys are compared by SHA-256 digest in constant time, so neither
 * the keys nor their digests sit in memory in a form a timing probe could walk.
 */
export function createAuthenticator(
  settings: AuthSettings,
  jwtVerifier?: JwtVerifierFactory,
): Authenticator {
  if (settings.jwt && !jwtVerifier) {
    throw new Error("PTT_JWT_SECRET / PTT_JWKS_URL: this entry point has no JWT verifier");
  }
  const verify = settings.jwt && jwtVerifier ? jwtVerifier(settings.jwt) : undefined;
  const claim = settings.jwt?.deviceClaim ?? "sub";
  const verified = new VerifiedTokens();
  let digests: Promise<KeyDigest[]> | undefined;
  const keyDigests = () => {
    digests ??= Promise.all(
      settings.apiKeys.map(async ({ hardwareId, key }) => ({
        hardwareId,
        sha256: "sha256" in key ? key.sha256 : await sha256(key.plain),
      })),
    );
    return digests;
  };
  return async (headers) => {
    const token = bearerToken(headers);
    if (token === null) return null;
    if (settings.apiKeys.length > 0) {
      const device = matchApiKey(await keyDigests(), await sha256(token));
      if (device !== null) return device;
    }
    if (!verify || !COMPACT_JWS.test(token)) return null;
    const known = verified.get(token);
    if (known) return known;
    const payload = await verify(token);
    const device = payload[claim];
    if (typeof device !== "string" || device.length === 0) {
      throw unauthenticated(`authorization: the token has no "${claim}" claim naming a device`);
    }
    verified.set(token, device, payload.exp, settings.jwt?.clockToleranceSec ?? 0);
    return device;
  };
}

/** How long a verified JWT is taken without verifying it again (at most until it expires). */
const VERIFIED_TTL_MS = 60_000;
const VERIFIED_MAX = 10_000;

/**
 * JWTs that verified, by token: a device sends the same token with every chunk (a bridge
 * socket keeps one for all its calls), and a signature check costs more than the COLLECT
 * itself. Only tokens that verified are kept (a forger cannot fill it), each until its exp
 * (plus the skew) or for a minute, whichever is first, so a key withdrawn from the JWKS stops
 * working within a minute. The oldest go first past VERIFIED_MAX.
 */
class VerifiedTokens {
  private readonly tokens = new Map<string, { device: string; until: number }>();

  get(token: string): string | undefined {
    const hit = this.tokens.get(token);
    if (!hit) return undefined;
    if (Date.now() < hit.until) return hit.device;
    this.tokens.delete(token);
    return undefined;
  }

  set(token: string, device: string, exp: unknown, toleranceSec: number): void {
    const expires = typeof exp === "number" ? (exp + toleranceSec) * 1000 : 0;
    const until = Math.min(expires, Date.now() + VERIFIED_TTL_MS);
    if (until <= Date.now()) return;
    if (this.tokens.size >= VERIFIED_MAX) {
      const oldest = this.tokens.keys().next().value;
      if (oldest !== undefined) this.tokens.delete(oldest);
    }
    this.tokens.set(token, { device, until });
  }
}

/** Static API keys only, `token -> hardware_id` (tests and embedders). */
export function createStaticTokenAuth(tokens: ReadonlyMap<string, string>): Authenticator {
  const apiKeys = [...tokens].map(([plain, hardwareId]) => ({ hardwareId, key: { plain } }));
  return createAuthenticator({ apiKeys });
}

/** docs/protocol.md §2: when auth is on, the token must name the same hardware_id. */
export async function authorize(
  auth: Authenticator | undefined,
  headers: Headers,
  hardwareId: string,
): Promise<void> {
  if (!auth) return;
  let allowed: string | null;
  try {
    allowed = await auth(headers);
  } catch (err) {
    if (err instanceof ConnectError) throw err;
    // A verifier's own failure is never a pass, and its details stay in the server.
    throw new ConnectError("authorization: the token could not be checked", Code.Unavailable);
  }
  if (allowed === null) {
    throw unauthenticated("authorization: a valid bearer token is required");
  }
  if (allowed !== hardwareId) {
    throw permissionDenied(`authorization: the token does not allow hardware_id ${hardwareId}`);
  }
}

/** The device of the key whose digest equals `digest`: every key is compared, in full. */
function matchApiKey(keys: readonly KeyDigest[], digest: Uint8Array): string | null {
  let found: string | null = null;
  for (const key of keys) {
    if (timingSafeEqual(key.sha256, digest) && found === null) found = key.hardwareId;
  }
  return found;
}

/** Equal bytes, in time that depends only on the lengths. */
export function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] as number) ^ (b[i] as number);
  return diff === 0;
}

export async function sha256(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}
