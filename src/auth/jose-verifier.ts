import { Code, ConnectError } from "@connectrpc/connect";
import {
  createRemoteJWKSet,
  errors,
  type JWTHeaderParameters,
  type JWTVerifyGetKey,
  jwtVerify,
} from "jose";
import type { JwtSettings, JwtVerifier } from "../core/auth.js";
import { unauthenticated } from "../core/errors.js";

/** Signing keys fetched from PTT_JWKS_URL are kept this long (jose refetches after). */
const JWKS_CACHE_MS = 10 * 60_000;
/** A token naming a key the cached set lacks refetches at most this often (key rotation). */
const JWKS_COOLDOWN_MS = 30_000;
const JWKS_TIMEOUT_MS = 5_000;
/** After a failed fetch, calls fail at once for this long instead of each fetching again. */
const JWKS_RETRY_MS = 5_000;

/**
 * The JwtVerifier port implemented with `jose` (WebCrypto only: the same code on Node, Bun,
 * Deno and workerd). HS256 with PTT_JWT_SECRET, RS256 / ES256 with the keys of PTT_JWKS_URL;
 * only those algorithms (never "none", never an HS256 token checked against a public key).
 * exp is required; exp, nbf and iat allow the configured clock skew. Every failure is a
 * ConnectError: UNAUTHENTICATED saying what was wrong with the token, or UNAVAILABLE when
 * the signing keys cannot be fetched (the token may be fine: retry).
 */
export function createJoseVerifier(settings: JwtSettings): JwtVerifier {
  const secret = settings.secret ? new TextEncoder().encode(settings.secret) : undefined;
  const jwks = settings.jwksUrl ? remoteKeys(new URL(settings.jwksUrl)) : undefined;
  const algorithms = [...(secret ? ["HS256"] : []), ...(jwks ? ["RS256", "ES256"] : [])];
  const key: JWTVerifyGetKey = (header, token) => {
    if (header.alg === "HS256" && secret) return secret;
    if (jwks) return jwks(header, token);
    // Unreachable: jwtVerify checks `algorithms` before asking for a key.
    throw unauthenticated(`authorization: algorithm ${String(header.alg)} is not accepted`);
  };
  return async (token) => {
    try {
      const { payload } = await jwtVerify(token, key, {
        algorithms,
        clockTolerance: settings.clockToleranceSec,
        requiredClaims: ["exp"],
        ...(settings.issuer !== undefined && { issuer: settings.issuer }),
        ...(settings.audience !== undefined && { audience: settings.audience }),
      });
      return payload;
    } catch (err) {
      throw refusal(err);
    }
  };
}

/** jose's remote key set, failing fast (UNAVAILABLE) for a while after a failed fetch. */
function remoteKeys(url: URL): JWTVerifyGetKey {
  const set = createRemoteJWKSet(url, {
    cacheMaxAge: JWKS_CACHE_MS,
    cooldownDuration: JWKS_COOLDOWN_MS,
    timeoutDuration: JWKS_TIMEOUT_MS,
  });
  let failedAt = Number.NEGATIVE_INFINITY;
  return async (header: JWTHeaderParameters, token) => {
    // Only when a fetch is due: without this, every forged token would fetch again.
    if (!set.fresh && Date.now() - failedAt < JWKS_RETRY_MS) throw keysUnavailable();
    try {
      return await set(header, token);
    } catch (err) {
      if (
        err instanceof errors.JWKSNoMatchingKey ||
        err instanceof errors.JWKSMultipleMatchingKeys
      ) {
        throw unauthenticated("authorization: no signing key of PTT_JWKS_URL matches the token");
      }
      if (err instanceof errors.JOSENotSupported || err instanceof errors.JOSEAlgNotAllowed) {
        throw err;
      }
      failedAt = Date.now();
      throw keysUnavailable(err);
    }
  };
}

function keysUnavailable(cause?: unknown): ConnectError {
  return new ConnectError(
    "authorization: the signing keys (PTT_JWKS_URL) cannot be fetched; retry",
    Code.Unavailable,
    undefined,
    undefined,
    cause,
  );
}

/** What the client is told about a refused token: enough to fix it, nothing of the keys. */
function refusal(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof errors.JWTExpired) return unauthenticated("authorization: the token expired");
  if (err instanceof errors.JWTClaimValidationFailed) {
    return unauthenticated(`authorization: token claim "${err.claim}" ${reasonOf(err)}`);
  }
  if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported) {
    return unauthenticated("authorization: the token's algorithm is not accepted");
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) {
    return unauthenticated("authorization: the token's signature does not verify");
  }
  return unauthenticated("authorization: the token is not a valid JWT");
}

function reasonOf(err: InstanceType<typeof errors.JWTClaimValidationFailed>): string {
  switch (err.reason) {
    case "missing":
      return "is missing";
    case "check_failed":
      return "does not match";
    default:
      return "is not valid";
  }
}
