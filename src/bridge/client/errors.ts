import { Code, ConnectError } from "@connectrpc/connect";
import { codeFromString } from "@connectrpc/connect/protocol-connect";
import type { CallEnd } from "../../gen/bridge_pb.js";

/** A failed bridge call as the ConnectError a gRPC or Connect client would have seen. */
export function callError(
  end: Pick<CallEnd, "code" | "message" | "metadata">,
): ConnectError | undefined {
  if (end.code === "") return undefined;
  const code = codeFromString(end.code) ?? Code.Unknown;
  return new ConnectError(end.message, code, new Headers(end.metadata));
}

/** CallEnd metadata as Headers (the call's trailers, plus its headers: the bridge sends both at the end). */
export function metadataHeaders(end: Pick<CallEnd, "metadata">): Headers {
  return new Headers(end.metadata);
}
