import {
  create,
  type DescMessage,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import type { ContextValues, Transport } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import type { ServerFrame } from "../../gen/bridge_pb.js";
import {
  InterruptRequestSchema,
  StreamingService,
  type StreamRequest,
  StreamRequestSchema,
  type StreamResponse,
} from "../../gen/streaming_pb.js";
import type { BridgeChannel, CallBody } from "./channel.js";
import { callError, metadataHeaders } from "./errors.js";
import { PushQueue } from "./push-queue.js";

/**
 * A Connect Transport over the bridge, so `createClient(StreamingService, transport)`
 * works in a browser exactly as over gRPC. The bridge sends a call's headers with its
 * trailers at the end, so `header` is empty and everything is in `trailer`.
 */
export function createBridgeTransport(channel: BridgeChannel): Transport {
  return {
    async unary<I extends DescMessage, O extends DescMessage>(
      method: Parameters<Transport["unary"]>[0] & { input: I; output: O },
      signal: AbortSignal | undefined,
      _timeoutMs: number | undefined,
      _header: HeadersInit | undefined,
      input: MessageInitShape<I>,
      _contextValues?: ContextValues,
    ) {
      if (method !== (StreamingService.method.interruptSession as unknown)) {
        throw new ConnectError(`${method.name} is not carried by the bridge`, Code.Unimplemented);
      }
      const req = create(
        InterruptRequestSchema,
        input as MessageInitShape<typeof InterruptRequestSchema>,
      );
      const { frames, trailer } = await run(
        channel,
        { case: "interrupt", value: req },
        false,
        signal,
      );
      const answer = frames.find((f) => f.case === "interrupt");
      if (!answer) throw new ConnectError("bridge call ended without an answer", Code.Internal);
      return {
        stream: false as const,
        service: method.parent,
        method,
        header: new Headers(),
        message: answer.value as unknown as MessageShape<O>,
        trailer,
      };
    },

    async stream<I extends DescMessage, O extends DescMessage>(
      method: Parameters<Transport["stream"]>[0] & { input: I; output: O },
      signal: AbortSignal | undefined,
      _timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: AsyncIterable<MessageInitShape<I>>,
      _contextValues?: ContextValues,
    ) {
      if (method !== (StreamingService.method.streamAudio as unknown)) {
        throw new ConnectError(`${method.name} is not carried by the bridge`, Code.Unimplemented);
      }
      let req: StreamRequest | undefined;
      for await (const m of input)
        req = create(StreamRequestSchema, m as MessageInitShape<typeof StreamRequestSchema>);
      if (!req) throw new ConnectError("StreamAudio needs one request", Code.InvalidArgument);
      const trailer = new Headers();
      const messages = streamCall(channel, req, signal, trailer, pttHeaders(header));
      return {
        stream: true as const,
        service: method.parent,
        method,
        header: new Headers(),
        message: messages as unknown as AsyncIterable<MessageShape<O>>,
        trailer,
      };
    },
  } as Transport;
}

/** Only a sequenced COLLECT or a CANCEL can be sent twice without changing the outcome. */
export function isResendable(req: StreamRequest): boolean {
  return (req.phase === 1 && req.chunkSeq > 0) || req.phase === 3;
}

async function* streamCall(
  channel: BridgeChannel,
  req: StreamRequest,
  signal: AbortSignal | undefined,
  trailer: Headers,
  metadata: { [name: string]: string },
) {
  const responses = new PushQueue<StreamResponse>();
  let ended = false;
  const handle = channel.call(
    { case: "streamAudio", value: req },
    {
      resend: isResendable(req),
      resumable: req.phase === 0 || req.phase === 2,
      onFrame: (body) => {
        if (body.case === "response") responses.push(body.value);
      },
      onEnd: (e) => {
        for (const [k, v] of metadataHeaders(e)) trailer.set(k, v);
        ended = true;
        responses.end(callError(e));
      },
    },
    metadata,
  );
  const onAbort = () => handle.cancel();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    yield* responses;
  } finally {
    signal?.removeEventListener("abort", onAbort);
    if (!ended) handle.cancel();
  }
}

function run(channel: BridgeChannel, body: CallBody, resend: boolean, signal?: AbortSignal) {
  return new Promise<{ frames: ServerFrame["body"][]; trailer: Headers }>((resolve, reject) => {
    const frames: ServerFrame["body"][] = [];
    const handle = channel.call(body, {
      resend,
      onFrame: (f) => frames.push(f),
      onEnd: (e) => {
        signal?.removeEventListener("abort", onAbort);
        const error = callError(e);
        if (error) reject(error);
        else resolve({ frames, trailer: metadataHeaders(e) });
      },
    });
    const onAbort = () => handle.cancel();
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** The call's ptt-* request headers, as ClientFrame.metadata (the socket carries the rest). */
function pttHeaders(init: HeadersInit | undefined): { [name: string]: string } {
  const out: { [name: string]: string } = {};
  if (!init) return out;
  new Headers(init).forEach((value, name) => {
    if (name.startsWith("ptt-")) out[name] = value;
  });
  return out;
}
