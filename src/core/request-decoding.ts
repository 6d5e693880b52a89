import { create, type DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor, type StreamRequest } from "@connectrpc/connect";
import { StreamingService, StreamRequestSchema } from "../gen/streaming_pb.js";
import { invalidArgument } from "./errors.js";

/**
 * How every transport decodes request messages (issue 11): one place so that Connect,
 * gRPC-Web, gRPC, the fast path and the bridge refuse the same inputs with the same codes.
 */

/**
 * protobuf-es binary options: unknown fields are dropped while decoding. Nothing reads them,
 * and keeping them let 6 MiB of two million tiny unknown fields cost ~1 s of CPU and 200 MB.
 */
export const BINARY_READ_OPTIONS = Object.freeze({ readUnknownFields: false });

/**
 * protobuf-es JSON options: an unknown key or enum name is an error. With connect's default
 * (ignore unknown) an unknown `phase` name such as "REQUEST_PHASE_PAUSE" decoded as 0, which
 * old clients mean as COMMIT, and consumed the user's open hold.
 */
export const JSON_READ_OPTIONS = Object.freeze({ ignoreUnknownFields: false });

/** Longest piece of a decoder's own message we pass on (it may quote client input). */
const MAX_DETAIL = 160;

/** connect raises these while reading the request; the client sent them, not the server. */
const DECODE_PREFIXES = ["parse binary: ", "protocol error: "];

/**
 * The error a client gets for a request message that could not be decoded: INVALID_ARGUMENT
 * naming the message, with a short reason. connect (and protobuf-es) report undecodable binary
 * as INTERNAL, which we keep for failures of our own; a missing or extra request message is
 * the client's error too, not UNIMPLEMENTED.
 */
export function decodeError(err: unknown, method: DescMethod): ConnectError {
  const input = method.input.typeName;
  if (!(err instanceof ConnectError)) {
    return undecodable(input, err instanceof Error ? err.message : String(err));
  }
  const raw = err.rawMessage;
  if (
    err.code === Code.Unimplemented &&
    /^protocol error: (missing|received extra) input/.test(raw)
  ) {
    const what = raw.includes("missing") ? "is missing" : "came more than once";
    return invalidArgument("request", `the ${input} message ${what}; send exactly one per call`);
  }
  if (err.code === Code.Internal && raw.startsWith("received compressed envelope")) {
    return invalidArgument("request", "compressed message, but the request declared no encoding");
  }
  if (err.code === Code.Internal && DECODE_PREFIXES.some((p) => raw.startsWith(p))) {
    return undecodable(input, raw.replace(/^parse binary: /, ""));
  }
  if (err.code === Code.InvalidArgument && raw.startsWith("cannot decode")) {
    // protobuf-es names the enum type, not the field: name the field, as every other
    // INVALID_ARGUMENT does ("phase: unknown value \"REQUEST_PHASE_PAUSE\"").
    const e = /^cannot decode enum (\S+) from JSON: (.*)$/s.exec(raw);
    const field = e ? method.input.fields.find((f) => f.enum?.typeName === e[1]) : undefined;
    if (e && field) return invalidArgument(field.name, `unknown value ${shorten(e[2] as string)}`);
    return invalidArgument("request", shorten(raw));
  }
  return err;
}

function undecodable(input: string, detail: string): ConnectError {
  return invalidArgument("request", `not a valid ${input} message (${shorten(detail)})`);
}

function shorten(s: string): string {
  return s.length <= MAX_DETAIL ? s : `${s.slice(0, MAX_DETAIL)}…`;
}

/**
 * connect's pipeline decodes a streaming call's request lazily, inside the iterable it hands
 * the implementation: this interceptor reads the one message itself, so that a request that
 * cannot be decoded (or is missing, or over max_request_bytes) gets INVALID_ARGUMENT /
 * RESOURCE_EXHAUSTED and, on StreamAudio, the error_message frame old clients read: the
 * implementation gets a stand-in request that carries the error (undecodableRequest), and
 * fails it the way it fails any other bad request, headers and all.
 */
export const requestDecoding: Interceptor = (next) => async (req) => {
  if (!req.stream) return next(req);
  let message: unknown;
  try {
    message = await single(req.message);
  } catch (err) {
    const error = decodeError(err, req.method);
    const standIn = standInRequest(req.method, error);
    if (!standIn) return next({ ...req, message: failing(error) } as StreamRequest);
    message = standIn;
  }
  return next({ ...req, message: once(message) } as StreamRequest);
};

const failures = new WeakMap<object, ConnectError>();

/**
 * For StreamAudio, a request that stands in for one that could not be read: the
 * implementation fails it with `error` (and its error_message frame). Other methods have none.
 */
export function standInRequest(method: DescMethod, error: ConnectError): object | undefined {
  if (!isStreamAudio(method)) return undefined;
  const standIn = create(StreamRequestSchema);
  failures.set(standIn, error);
  return standIn;
}

/** The decoding error a stand-in request carries, if `req` is one. */
export function undecodableRequest(req: object): ConnectError | undefined {
  return failures.get(req);
}

async function single(input: AsyncIterable<unknown>): Promise<unknown> {
  const it = input[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done === true) {
    throw new ConnectError("protocol error: missing input message", Code.Unimplemented);
  }
  const second = await it.next();
  if (second.done !== true) {
    throw new ConnectError("protocol error: received extra input message", Code.Unimplemented);
  }
  return first.value;
}

async function* once<T>(value: T): AsyncGenerator<T> {
  yield value;
}

// biome-ignore lint/correctness/useYield: an iterable whose first read throws
async function* failing(error: ConnectError): AsyncGenerator<never> {
  throw error;
}

function isStreamAudio(method: DescMethod): boolean {
  const streamAudio = StreamingService.method.streamAudio;
  return method.parent.typeName === streamAudio.parent.typeName && method.name === streamAudio.name;
}

/** The options every Connect router of ptt-edge is built with (Node adapter and fetch). */
export function connectRouterOptions(maxRequestBytes: number, shutdownSignal?: AbortSignal) {
  return {
    readMaxBytes: maxRequestBytes,
    shutdownSignal,
    binaryOptions: BINARY_READ_OPTIONS,
    jsonOptions: JSON_READ_OPTIONS,
    interceptors: [requestDecoding],
  };
}
