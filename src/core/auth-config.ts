import { ConnectError } from "@connectrpc/connect";
import type { ApiKey, AuthSettings, JwtSettings } from "./auth.js";
import type { Env } from "./env-config.js";
import { canonicalHardwareId } from "./identifiers.js";

export const AUTH_VARS = [
  "PTT_AUTH_TOKENS",
  "PTT_JWT_SECRET",
  "PTT_JWKS_URL",
  "PTT_JWT_ISSUER",
  "PTT_JWT_AUDIENCE",
  "PTT_JWT_DEVICE_CLAIM",
] as const;

/** exp / nbf / iat may be this far off: device clocks drift. */
export const JWT_CLOCK_TOLERANCE_SEC = 30;
/** RFC 7518 §3.2: an HS256 key at least as long as the hash. */
const MIN_SECRET_BYTES = 32;
const SHA256_HEX = /^sha256:([0-9a-f]{64})$/i;

/**
 * The auth settings of the environment, or undefined (auth off). Fails loudly, naming the
 * variable, on anything that would leave auth weaker than the operator meant.
 */
export function authSettingsFromEnv(env: Env): AuthSettings | undefined {
  const apiKeys = env.PTT_AUTH_TOKENS ? parseApiKeys(env.PTT_AUTH_TOKENS) : [];
  const jwt = jwtSettings(env);
  if (apiKeys.length === 0 && !jwt) return undefined;
  return jwt ? { apiKeys, jwt } : { apiKeys };
}

function jwtSettings(env: Env): JwtSettings | undefined {
  const secret = env.PTT_JWT_SECRET || undefined;
  const jwksUrl = env.PTT_JWKS_URL || undefined;
  const issuer = env.PTT_JWT_ISSUER || undefined;
  const audience = env.PTT_JWT_AUDIENCE || undefined;
  const deviceClaim = env.PTT_JWT_DEVICE_CLAIM || "sub";
  if (!secret && !jwksUrl) {
    for (const name of ["PTT_JWT_ISSUER", "PTT_JWT_AUDIENCE", "PTT_JWT_DEVICE_CLAIM"]) {
      if (env[name]) {
        throw new Error(`${name}: has no effect without PTT_JWT_SECRET or PTT_JWKS_URL`);
      }
    }
    return undefined;
  }
  if (secret !== undefined && new TextEncoder().encode(secret).length < MIN_SECRET_BYTES) {
    throw new Error(`PTT_JWT_SECRET: must be at least ${MIN_SECRET_BYTES} bytes (HS256)`);
  }
  if (jwksUrl !== undefined) {
    checkJwksUrl(jwksUrl);
    // A JWKS is usually an identity provider's, shared by many applications: without an
    // audience, any of its tokens whose subject happens to name a device would do.
    if (!audience) throw new Error("PTT_JWT_AUDIENCE: required with PTT_JWKS_URL");
  }
  if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(deviceClaim)) {
    throw new Error(`PTT_JWT_DEVICE_CLAIM: not a claim name: "${deviceClaim.slice(0, 40)}"`);
  }
  return {
    ...(secret !== undefined && { secret }),
    ...(jwksUrl !== undefined && { jwksUrl }),
    ...(issuer !== undefined && { issuer }),
    ...(audience !== undefined && { audience }),
    deviceClaim,
    clockToleranceSec: JWT_CLOCK_TOLERANCE_SEC,
  };
}

function checkJwksUrl(raw: string): void {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(`PTT_JWKS_URL: not a URL: "${raw.slice(0, 80)}"`);
  }
  // Keys fetched in the clear could be swapped on the way: https, except on this machine.
  if (url.protocol !== "https:" && !(url.protocol === "http:" && isLoopbackHost(url.hostname))) {
    throw new Error("PTT_JWKS_URL: must be https:// (http:// only on a loopback address)");
  }
}

/**
 * "hw1=key1,hw2=sha256:<64 hex>": each device's key, or the SHA-256 of it (so the
 * configuration holds nothing a reader could present). Split on the first "=" only:
 * base64 keys end in "=" padding.
 */
function parseApiKeys(raw: string): ApiKey[] {
  const keys: ApiKey[] = [];
  for (const pair of raw.split(",")) {
    const at = pair.indexOf("=");
    const device = pair.slice(0, at).trim();
    const key = pair.slice(at + 1).trim();
    if (at < 0 || !device || !key) {
      throw new Error('PTT_AUTH_TOKENS: expected "hardware_id=token,..." pairs');
    }
    let hardwareId: string;
    try {
      hardwareId = canonicalHardwareId(device);
    } catch (err) {
      throw new Error(`PTT_AUTH_TOKENS: ${ConnectError.from(err).rawMessage}`);
    }
    const digest = SHA256_HEX.exec(key)?.[1];
    keys.push({ hardwareId, key: digest ? { sha256: fromHex(digest) } : { plain: key } });
  }
  return keys;
}

function isLoopbackHost(hostname: string): boolean {
  return hostname === "localhost" || hostname === "[::1]" || /^127(\.\d{1,3}){3}$/.test(hostname);
}

function fromHex(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}
