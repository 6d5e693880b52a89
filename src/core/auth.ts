import { permissionDenied, unauthenticated } from "./errors.js";

/**
 * Maps a request's credentials to the hardware id they may act for, or null
 * when there are none or they are not valid. Async so it can ask a service.
 */
export type Authenticator = (headers: Headers) => Promise<string | null>;

/** Static bearer tokens, `token -> hardware_id` (PTT_AUTH_TOKENS="hw1=tok1,hw2=tok2"). */
export function createStaticTokenAuth(tokens: ReadonlyMap<string, string>): Authenticator {
  return async (headers) => {
    const value = headers.get("authorization");
    const match = value ? /^Bearer\s+(\S+)$/i.exec(value) : null;
    return match ? (tokens.get(match[1] as string) ?? null) : null;
  };
}

/** docs/protocol.md §2: when auth is on, the token must name the same hardware_id. */
export async function authorize(
  auth: Authenticator | undefined,
  headers: Headers,
  hardwareId: string,
): Promise<void> {
  if (!auth) return;
  const allowed = await auth(headers);
  if (allowed === null) {
    throw unauthenticated("authorization: a valid bearer token is required");
  }
  if (allowed !== hardwareId) {
    throw permissionDenied(`authorization: the token does not allow hardware_id ${hardwareId}`);
  }
}
