import type { ConnectRouter, HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { type InterruptRequest, StreamingService } from "../gen/streaming_pb.js";
import { authorize } from "./auth.js";
import { unimplemented } from "./errors.js";
import { canonicalHardwareId } from "./identifiers.js";
import type { PttCore } from "./ptt-core.js";
import { createStreamAudio } from "./stream-audio.js";

/** The service implementation: the same handlers behind the Connect router and the bridge. */
export function createServiceImpl(core: PttCore): ServiceImpl<typeof StreamingService> {
  return {
    streamAudio: createStreamAudio(core),
    interruptSession: (req, ctx) => interruptSession(core, req, ctx),
    // Part of the native clients' service descriptor; no issue asks ptt-edge to serve them yet.
    generateWelcomeAudio() {
      throw unimplemented("GenerateWelcomeAudio");
    },
    reportUsage() {
      throw unimplemented("ReportUsage");
    },
  };
}

/** The one Connect router every runtime serves: `routes(core)(router)`. */
export function routes(core: PttCore): (router: ConnectRouter) => void {
  const impl = createServiceImpl(core);
  return (router) => {
    router.service(StreamingService, impl);
  };
}

async function interruptSession(core: PttCore, req: InterruptRequest, ctx: HandlerContext) {
  const hardwareId = canonicalHardwareId(req.hardwareId);
  await authorize(core.auth, ctx.requestHeader, hardwareId);
  const stopped = core.replies.interrupt(hardwareId, "interrupted");
  core.metrics.interrupts++;
  core.metrics.interruptedReplies += stopped.length;
  return {
    success: true,
    interruptedSessions: stopped,
    message: stopped.length > 0 ? `interrupted ${stopped.length} replies` : "no reply was running",
  };
}
