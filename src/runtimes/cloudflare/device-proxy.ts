import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { codeFromString } from "@connectrpc/connect/protocol-connect";
import { type Authenticator, authorize } from "../../core/auth.js";
import { canonicalHardwareId } from "../../core/identifiers.js";
import { errorFrame } from "../../core/reply-frames.js";
import { validateStreamRequest } from "../../core/request-validation.js";
import type { StreamingHandlers } from "../../core/streaming-service.js";
import {
  type CallEnd,
  ClientFrameSchema,
  type ServerFrame,
  ServerFrameSchema,
} from "../../gen/bridge_pb.js";
import type { InterruptResponseSchema } from "../../gen/streaming_pb.js";
import { readFrames } from "./frame-stream.js";

/** The slice of a Durable Object namespace binding the proxy uses. */
export interface DeviceNamespace {
  idFromName(name: string): unknown;
  get(id: unknown): { fetch(req: Request): Promise<Response> };
}

export const DEVICE_HEADER = "x-ptt-device";
/** The object the Worker's /readyz asks; "#" is not allowed in a hardware_id: no device's. */
export const READY_OBJECT = "#readyz";

type Body = ServerFrame["body"];

/**
 * Calls forwarded to the device's Durable Object: the Worker validates the request
 * (as core does, in the same order) and the caller's token, then the object runs the
 * call with its own core (its store, its running replies) and streams the bridge
 * frames back. Response headers arrive with the trailers (at the end) through this hop.
 */
export function createDeviceProxy(
  devices: DeviceNamespace,
  auth?: Authenticator,
): StreamingHandlers {
  async function* streamAudio(
    req: Parameters<StreamingHandlers["streamAudio"]>[0],
    ctx: HandlerContext,
  ) {
    let frames: AsyncGenerator<Body> | undefined;
    let step: IteratorResult<Body>;
    try {
      // docs/protocol.md §2 order: hardware_id, session_id, phase, seq, mode; then the token.
      const v = validateStreamRequest(req);
      await authorize(auth, ctx.requestHeader, v.key.hardwareId);
      frames = forward(devices, v.key.hardwareId, { case: "streamAudio", value: req }, ctx);
      // Reaching the object is part of this step: its failure is an error before any frame.
      step = await frames.next();
    } catch (err) {
      // As in core: old clients read the reason from an error_message frame.
      const error = ConnectError.from(err);
      if (!ctx.signal.aborted) yield errorFrame(error.rawMessage);
      throw error;
    }
    try {
      for (; !step.done; step = await frames.next()) {
        const body = step.value;
        if (body.case === "response") yield body.value;
        else if (body.case === "end") finish(body.value, ctx);
      }
    } finally {
      // Stopped early (the client went away): stop reading the object's stream too.
      await frames.return(undefined);
    }
  }

  async function interruptSession(
    req: Parameters<StreamingHandlers["interruptSession"]>[0],
    ctx: HandlerContext,
  ) {
    const device = canonicalHardwareId(req.hardwareId);
    await authorize(auth, ctx.requestHeader, device);
    let answer: MessageInitShape<typeof InterruptResponseSchema> = {};
    for await (const body of forward(devices, device, { case: "interrupt", value: req }, ctx)) {
      if (body.case === "interrupt") answer = body.value;
      else if (body.case === "end") finish(body.value, ctx);
    }
    return answer;
  }

  return { streamAudio, interruptSession };
}

/** The object's frames for one call; failing to reach the object is UNAVAILABLE. */
async function* forward(
  devices: DeviceNamespace,
  device: string,
  body: MessageInitShape<typeof ClientFrameSchema>["body"],
  ctx: HandlerContext,
): AsyncGenerator<Body> {
  // Only what the object needs: a bridge's headers are those of a WebSocket upgrade.
  const headers = new Headers({ [DEVICE_HEADER]: device });
  const authorization = ctx.requestHeader.get("authorization");
  if (authorization) headers.set("authorization", authorization);
  headers.set("content-type", "application/octet-stream");
  let res: Response;
  try {
    res = await devices.get(devices.idFromName(device)).fetch(
      new Request("https://device/call", {
        method: "POST",
        headers,
        body: toBinary(
          ClientFrameSchema,
          create(ClientFrameSchema, { callId: 1, body, metadata: pttMetadata(ctx.requestHeader) }),
        ),
        signal: ctx.signal,
      }),
    );
  } catch (err) {
    throw unreachable(err, ctx);
  }
  if (!res.ok || !res.body) {
    await res.body?.cancel();
    throw new ConnectError(`device object answered HTTP ${res.status}`, Code.Unavailable);
  }
  try {
    for await (const bytes of readFrames(res.body)) {
      yield fromBinary(ServerFrameSchema, bytes).body;
    }
  } catch (err) {
    throw unreachable(err, ctx);
  }
}

/** The call's ptt-* request headers (ptt-resume-from), as the object's call reads them. */
function pttMetadata(headers: Headers): { [name: string]: string } {
  const out: { [name: string]: string } = {};
  headers.forEach((value, name) => {
    if (name.startsWith("ptt-")) out[name] = value;
  });
  return out;
}

/** A failed hop to the object: the caller's own cancellation as is, anything else UNAVAILABLE. */
function unreachable(err: unknown, ctx: HandlerContext): unknown {
  if (ctx.signal.aborted || err instanceof ConnectError) return err;
  const why = err instanceof Error ? err.message : String(err);
  return new ConnectError(
    `device object unreachable: ${why}`,
    Code.Unavailable,
    undefined,
    undefined,
    err,
  );
}

/**
 * Applies a CallEnd: its metadata become trailers; a code becomes the call's error.
 * The error carries no metadata of its own: connect adds an error's metadata to the
 * trailers already set, which would send each of them twice.
 */
function finish(end: CallEnd, ctx: HandlerContext): void {
  for (const [k, v] of Object.entries(end.metadata)) ctx.responseTrailer.set(k, v);
  if (end.code !== "") {
    throw new ConnectError(end.message, codeFromString(end.code) ?? Code.Unknown);
  }
}
