import type { ConnectError } from "@connectrpc/connect";
import { alreadyExists, failedPrecondition } from "./errors.js";
import type { Limits } from "./limits.js";
import type { Tombstone } from "./session.js";

/** COLLECT on a sealed session: nothing is stored, and the client is told why. */
export function collectOnSealed(tomb: Tombstone, seq: number): ConnectError {
  return failedPrecondition(
    `session ${tomb.sessionId} is already ${tomb.state}; chunk ${seq} was not added`,
  );
}

/** COMMIT on a sealed session: the workflow does not run. */
export function commitOnSealed(tomb: Tombstone, limits: Limits): ConnectError {
  switch (tomb.state) {
    case "committed":
      return alreadyExists(`session ${tomb.sessionId} is already committed`);
    case "cancelled":
      return failedPrecondition(`session ${tomb.sessionId} was cancelled; nothing was committed`);
    case "expired":
      return failedPrecondition(
        tomb.expiredBy === "hold"
          ? `session ${tomb.sessionId} expired: its chunks expired after the ${seconds(limits.maxHoldMs)} s hold limit`
          : `session ${tomb.sessionId} expired: its chunks expired after ${seconds(limits.idleTtlMs)} s idle`,
      );
  }
}

function seconds(ms: number): string {
  return String(Math.round(ms / 100) / 10);
}
