import { Code, ConnectError } from "@connectrpc/connect";
import { resourceExhausted, toConnectError } from "./errors.js";
import { LIMIT_NAMES } from "./limits.js";
import { ReplyAborted, ReplyStalled } from "./reply-registry.js";

/** The status a failed call ends with. Aborted replies end CANCELLED (docs/protocol.md §4). */
export function asCallError(err: unknown): ConnectError {
  // The reader took nothing for reply_stall_ms (docs/protocol.md §5).
  if (err instanceof ReplyStalled) return resourceExhausted(LIMIT_NAMES.replyStallMs, err.detail);
  if (err instanceof ReplyAborted) {
    const why =
      err.why === "interrupted"
        ? "reply interrupted by InterruptSession"
        : err.why === "barge-in"
          ? "reply interrupted: the device started a new hold"
          : err.why === "cancelled"
            ? "reply cancelled by CANCEL"
            : "reply cancelled: the server is shutting down";
    return new ConnectError(why, Code.Canceled);
  }
  // A bare abort (DOMException "AbortError") from a signal we did not give a reason to.
  if (err instanceof Error && err.name === "AbortError") {
    return new ConnectError("call cancelled", Code.Canceled);
  }
  return toConnectError(err);
}
