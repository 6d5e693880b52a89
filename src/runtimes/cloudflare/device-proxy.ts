import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { codeFromString } from "@connectrpc/connect/protocol-connect";
import { type Authenticator, authorize } from "../../core/auth.js";
import { canonicalHardwareId } from "../../core/identifiers.js";
import { errorFrame } from "../../core/reply-frames.js";
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

/**
 * Calls forwarded to the device's Durable Object: the Worker validates the
 * hardware id and the caller's token, then the object runs the call with its own
 * core (its store, its running replies) and streams the bridge frames back.
 * Response headers arrive with the trailers (at the end) through this hop.
 */
export function createDeviceProxy(
  devices: DeviceNamespace,
  auth?: Authenticator,
): StreamingHandlers {
  async function* streamAudio(
    req: Parameters<StreamingHandlers["streamAudio"]>[0],
    ctx: HandlerContext,
  ) {
    let frames: AsyncGenerator<ServerFrame["body"]>;
    try {
      const device = canonicalHardwareId(req.hardwareId);
      await authorize(auth, ctx.requestHeader, device);
      frames = forward(devices, device, { case: "streamAudio", value: req }, ctx);
    } catch (err) {
      // As in core: old clients read the reason from an error_message frame.
      const error = ConnectError.from(err);
      yield errorFrame(error.rawMessage);
      throw error;
    }
    for await (const body of frames) {
      if (body.case === "response") yield body.value;
      else if (body.case === "end") finish(body.value, ctx);
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

async function* forward(
  devices: DeviceNamespace,
  device: string,
  body: MessageInitShape<typeof ClientFrameSchema>["body"],
  ctx: HandlerContext,
): AsyncGenerator<ServerFrame["body"]> {
  // Only what the object needs: a bridge's headers are those of a WebSocket upgrade.
  const headers = new Headers({ [DEVICE_HEADER]: device });
  const authorization = ctx.requestHeader.get("authorization");
  if (authorization) headers.set("authorization", authorization);
  headers.set("content-type", "application/octet-stream");
  const res = await devices.get(devices.idFromName(device)).fetch(
    new Request("https://device/call", {
      method: "POST",
      headers,
      body: toBinary(ClientFrameSchema, create(ClientFrameSchema, { callId: 1, body })),
      signal: ctx.signal,
    }),
  );
  if (!res.ok || !res.body) {
    throw new ConnectError(`device object answered HTTP ${res.status}`, Code.Unavailable);
  }
  for await (const bytes of readFrames(res.body)) {
    yield fromBinary(ServerFrameSchema, bytes).body;
  }
}

/** Applies a CallEnd: its metadata become trailers; a code becomes the call's error. */
function finish(end: CallEnd, ctx: HandlerContext): void {
  for (const [k, v] of Object.entries(end.metadata)) ctx.responseTrailer.set(k, v);
  if (end.code !== "") {
    throw new ConnectError(
      end.message,
      codeFromString(end.code) ?? Code.Unknown,
      ctx.responseTrailer,
    );
  }
}
