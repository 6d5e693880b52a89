import { Code, ConnectError } from "@connectrpc/connect";
import { type Authenticator, authorize } from "../../core/auth.js";
import type { FetchHandler } from "../../core/fetch-app.js";
import { canonicalHardwareId } from "../../core/identifiers.js";
import { errorFrame } from "../../core/reply-frames.js";
import { validateStreamRequest } from "../../core/request-validation.js";
import type { StreamingHandlers } from "../../core/streaming-service.js";
import { DEVICE_HEADER, type DeviceNamespace, deviceFetch } from "./device-client.js";

/** The Worker's router answers a call it accepted with this header: the device to forward to. */
const ROUTE_HEADER = "x-ptt-route";
/** Asks the Worker's router to end a call UNAVAILABLE with this reason (the object failed). */
const UNREACHABLE_HEADER = "x-ptt-unreachable";

/**
 * The Worker's handlers: they run nothing. They check what the Worker can check without the
 * device's state (the request, in docs/protocol.md §2 order, then the caller's token) and
 * name the device; an error is answered here, in the caller's protocol, by the same router
 * every runtime runs (an error_message frame first, for old clients, as core does).
 */
export function createRouteHandlers(auth?: Authenticator): StreamingHandlers {
  return {
    async *streamAudio(req, ctx) {
      try {
        const { key } = validateStreamRequest(req);
        await authorize(auth, ctx.requestHeader, key.hardwareId);
        route(ctx.requestHeader, ctx.responseHeader, key.hardwareId);
      } catch (err) {
        const error = ConnectError.from(err);
        if (!ctx.signal.aborted) yield errorFrame(error.rawMessage);
        throw error;
      }
    },
    async interruptSession(req, ctx) {
      const device = canonicalHardwareId(req.hardwareId);
      await authorize(auth, ctx.requestHeader, device);
      route(ctx.requestHeader, ctx.responseHeader, device);
      return {};
    },
  };
}

function route(request: Headers, response: Headers, device: string): void {
  const unreachable = request.get(UNREACHABLE_HEADER);
  if (unreachable !== null) throw new ConnectError(unreachable, Code.Unavailable);
  response.set(ROUTE_HEADER, device);
}

/**
 * One Connect or gRPC-Web call: `checker` (the router over createRouteHandlers) reads the
 * request and names its device, then the original request goes to that device's object,
 * whose router runs it; its response (headers such as ptt-turn-id, body, trailers) is the
 * caller's. An object that cannot be reached, or answers outside the protocol, makes the
 * call UNAVAILABLE, answered by the checker in the caller's protocol.
 */
export async function forwardCall(
  checker: FetchHandler,
  devices: DeviceNamespace,
  req: Request,
): Promise<Response> {
  const body = req.method === "GET" || req.method === "HEAD" ? null : await req.arrayBuffer();
  const headers = new Headers(req.headers);
  for (const h of [DEVICE_HEADER, ROUTE_HEADER, UNREACHABLE_HEADER]) headers.delete(h);
  const copy = (unreachable?: string) => {
    const h = new Headers(headers);
    if (unreachable !== undefined) h.set(UNREACHABLE_HEADER, unreachable.replace(/[\r\n]+/g, " "));
    return new Request(req.url, { method: req.method, headers: h, body, signal: req.signal });
  };
  const checked = await checker(copy());
  const device = checked.headers.get(ROUTE_HEADER);
  if (device === null) return checked;
  await checked.body?.cancel();
  let res: Response;
  try {
    res = await deviceFetch(devices, device)(copy());
  } catch (err) {
    if (req.signal.aborted) throw err;
    return checker(copy(ConnectError.from(err).rawMessage));
  }
  // The object's router answers 200, or a Connect unary error as JSON; anything else is
  // not its router's answer (an exception in the object, a runtime error page).
  const type = res.headers.get("content-type") ?? "";
  if (res.status !== 200 && !type.startsWith("application/json")) {
    await res.body?.cancel();
    return checker(copy(`device object answered HTTP ${res.status}`));
  }
  return res;
}
