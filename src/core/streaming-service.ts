import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ConnectRouter, HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  type InterruptRequest,
  type InterruptResponseSchema,
  StreamingService,
  type StreamRequest,
  type StreamResponse,
} from "../gen/streaming_pb.js";
import { authorize } from "./auth.js";
import { unimplemented } from "./errors.js";
import { canonicalHardwareId } from "./identifiers.js";
import type { PttCore } from "./ptt-core.js";
import { interruptEverywhere } from "./reply-stops.js";
import { createStreamAudio, createStreamAudioOnce, type OneFrame } from "./stream-audio.js";

/**
 * The two calls ptt-edge serves, as plain functions: the Connect router and the
 * bridge run the same ones. A runtime may substitute its own (the Workers runtime
 * forwards them to the device's Durable Object).
 */
export interface StreamingHandlers {
  streamAudio(req: StreamRequest, ctx: HandlerContext): AsyncIterable<StreamResponse>;
  /**
   * streamAudio's calls of one frame (COLLECT, CANCEL) without its generator, or undefined
   * for the others (stream-audio.ts). Optional: handlers without it run every call through
   * streamAudio (the Workers runtime's device proxy).
   */
  streamAudioOnce?:
    | ((req: StreamRequest, ctx: HandlerContext) => Promise<OneFrame | undefined>)
    | undefined;
  interruptSession(
    req: InterruptRequest,
    ctx: HandlerContext,
  ): Promise<MessageInitShape<typeof InterruptResponseSchema>>;
}

export function createStreamingHandlers(core: PttCore): StreamingHandlers {
  return {
    streamAudio: createStreamAudio(core),
    streamAudioOnce: createStreamAudioOnce(core),
    interruptSession: (req, ctx) => interruptSession(core, req, ctx),
  };
}

/** The service implementation behind the Connect router. */
export function serviceImplOf(handlers: StreamingHandlers): ServiceImpl<typeof StreamingService> {
  return {
    streamAudio: (req, ctx) => handlers.streamAudio(req, ctx),
    interruptSession: (req, ctx) => handlers.interruptSession(req, ctx),
    // Part of the native clients' service descriptor; no issue asks ptt-edge to serve them yet.
    generateWelcomeAudio() {
      throw unimplemented("GenerateWelcomeAudio");
    },
    reportUsage() {
      throw unimplemented("ReportUsage");
    },
  };
}

/** The service implementation of a core (the usual case). */
export function createServiceImpl(core: PttCore): ServiceImpl<typeof StreamingService> {
  return serviceImplOf(createStreamingHandlers(core));
}

/** The one Connect router every runtime serves: `routes(core)(router)`. */
export function routes(
  core: PttCore,
  handlers: StreamingHandlers = createStreamingHandlers(core),
): (router: ConnectRouter) => void {
  const impl = serviceImplOf(handlers);
  return (router) => {
    router.service(StreamingService, impl);
  };
}

async function interruptSession(core: PttCore, req: InterruptRequest, ctx: HandlerContext) {
  const hardwareId = canonicalHardwareId(req.hardwareId);
  if (core.auth) await authorize(core.auth, ctx.requestHeader, hardwareId);
  core.metrics.interrupts++;
  const stopped = await interruptEverywhere(core, hardwareId);
  return {
    success: true,
    interruptedSessions: stopped,
    message: stopped.length > 0 ? `interrupted ${stopped.length} replies` : "no reply was running",
  };
}
