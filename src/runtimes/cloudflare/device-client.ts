import { Code, ConnectError, createClient, type HandlerContext } from "@connectrpc/connect";
import { createFetchClient } from "@connectrpc/connect/protocol";
import { createTransport } from "@connectrpc/connect/protocol-connect";
import { canonicalHardwareId } from "../../core/identifiers.js";
import type { StreamingHandlers } from "../../core/streaming-service.js";
import { StreamingService } from "../../gen/streaming_pb.js";

/** The slice of a Durable Object namespace binding the Worker and the objects use. */
export interface DeviceNamespace {
  idFromName(name: string): unknown;
  newUniqueId(): unknown;
  get(id: unknown): { fetch(req: Request): Promise<Response> };
}

/** Names the device whose object a request is for (set by the Worker, never by a client). */
export const DEVICE_HEADER = "x-ptt-device";
/** The object the Worker's /readyz asks; "#" is not allowed in a hardware_id: no device's. */
export const READY_OBJECT = "#readyz";

/** A device's object as a `fetch`; failing to reach it is UNAVAILABLE, naming why. */
export function deviceFetch(devices: DeviceNamespace, device: string): typeof fetch {
  const stub = devices.get(devices.idFromName(device));
  return async (input, init) => {
    const req = new Request(input, init);
    req.headers.set(DEVICE_HEADER, device);
    try {
      return await stub.fetch(req);
    } catch (err) {
      if (req.signal.aborted) throw err;
      const why = err instanceof Error ? err.message : String(err);
      throw new ConnectError(`device object unreachable: ${why}`, Code.Unavailable);
    }
  };
}

/**
 * Calls of other devices that arrive on a bridge socket: each goes to its device's object
 * over Connect (binary) through the object's fetch, where the same router every runtime
 * serves runs it. Response headers and trailers are copied onto the call's own; the
 * object's frames (its error_message frame included) pass through as they are.
 */
export function createDeviceClient(devices: DeviceNamespace): StreamingHandlers {
  const clientOf = (hardwareId: string) =>
    createClient(
      StreamingService,
      createTransport({
        httpClient: createFetchClient(deviceFetch(devices, canonicalHardwareId(hardwareId))),
        baseUrl: "https://device",
        useBinaryFormat: true,
        interceptors: [],
        acceptCompression: [],
        sendCompression: null,
        compressMinBytes: Number.MAX_SAFE_INTEGER,
        readMaxBytes: 0xffffffff,
        writeMaxBytes: 0xffffffff,
      }),
    );
  const options = (ctx: HandlerContext) => {
    // Only what the object reads: a bridge call's headers are its socket's upgrade request
    // plus its frame's ptt-* metadata (ptt-resume-from).
    const headers = new Headers();
    ctx.requestHeader.forEach((value, name) => {
      if (name === "authorization" || name.startsWith("ptt-")) headers.set(name, value);
    });
    return {
      headers,
      signal: ctx.signal,
      onHeader: (h: Headers) => copy(h, ctx.responseHeader),
      onTrailer: (t: Headers) => copy(t, ctx.responseTrailer),
    };
  };
  return {
    async *streamAudio(req, ctx) {
      try {
        yield* clientOf(req.hardwareId).streamAudio(req, options(ctx));
      } catch (err) {
        throw withoutMetadata(err);
      }
    },
    async interruptSession(req, ctx) {
      try {
        return await clientOf(req.hardwareId).interruptSession(req, options(ctx));
      } catch (err) {
        throw withoutMetadata(err);
      }
    },
  };
}

/** The object's ptt-* headers (the protocol's own: ptt-turn-id, ptt-collect, ...). */
function copy(from: Headers, to: Headers): void {
  from.forEach((value, key) => {
    if (key.startsWith("ptt-")) to.set(key, value);
  });
}

/**
 * The object's error as this call's: its trailers were copied already, and connect would
 * add an error's metadata to them again ("ptt-turn-id: abc, abc").
 */
function withoutMetadata(err: unknown): unknown {
  if (!(err instanceof ConnectError)) return err;
  return new ConnectError(err.rawMessage, err.code, undefined, undefined, err.cause);
}
