import { Code, ConnectError } from "@connectrpc/connect";

/**
 * The only way errors leave core: a ConnectError whose message names the field
 * or limit at fault, so every transport reports the same code and text.
 */

export function invalidArgument(field: string, rule: string): ConnectError {
  return new ConnectError(`${field}: ${rule}`, Code.InvalidArgument);
}

export function resourceExhausted(limit: string, detail: string): ConnectError {
  return new ConnectError(`${limit}: ${detail}`, Code.ResourceExhausted);
}

export function failedPrecondition(message: string): ConnectError {
  return new ConnectError(message, Code.FailedPrecondition);
}

export function alreadyExists(message: string): ConnectError {
  return new ConnectError(message, Code.AlreadyExists);
}

export function permissionDenied(message: string): ConnectError {
  return new ConnectError(message, Code.PermissionDenied);
}

export function unauthenticated(message: string): ConnectError {
  return new ConnectError(message, Code.Unauthenticated);
}

export function unimplemented(method: string): ConnectError {
  return new ConnectError(`${method} is not implemented by ptt-edge`, Code.Unimplemented);
}

export function cancelled(message: string): ConnectError {
  return new ConnectError(message, Code.Canceled);
}

export function unavailable(message: string): ConnectError {
  return new ConnectError(message, Code.Unavailable);
}

/** A store that could not read or write: nothing changed, the client may retry. */
export function storeUnavailable(err: unknown): ConnectError {
  return unavailable(`session store: ${err instanceof Error ? err.message : String(err)}`);
}

/** Wraps anything thrown by a workflow or store so only ConnectErrors leave core. */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  return new ConnectError("internal error", Code.Internal, undefined, undefined, err);
}
