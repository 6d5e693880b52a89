import { ChunkMode, RequestPhase, type StreamRequest } from "../gen/streaming_pb.js";
import { invalidArgument } from "./errors.js";
import { canonicalHardwareId, canonicalSessionId } from "./identifiers.js";
import { undecodableRequest } from "./request-decoding.js";
import type { Chunk, SessionKey } from "./session.js";

export type Phase = "collect" | "commit" | "cancel";

export interface ValidRequest {
  key: SessionKey;
  phase: Phase;
  seq: number;
  mode: ChunkMode;
}

/** docs/protocol.md §2 checks in their documented order: hardware_id, session_id, phase, seq, mode. */
export function validateStreamRequest(req: StreamRequest): ValidRequest {
  // A stand-in for a request connect's pipeline could not read (request-decoding.ts): its
  // own error (undecodable, over max_request_bytes) comes first, for every implementation
  // that validates (core's StreamAudio, the Worker's device proxy).
  const undecodable = undecodableRequest(req);
  if (undecodable) throw undecodable;
  const hardwareId = canonicalHardwareId(req.hardwareId);
  const sessionId = canonicalSessionId(req.sessionId);
  const phase = phaseOf(req.phase);
  if (req.chunkSeq < 0) {
    throw invalidArgument("chunk_seq", `must be 0 (unsequenced) or positive; got ${req.chunkSeq}`);
  }
  if (ChunkMode[req.chunkMode] === undefined) {
    throw invalidArgument("chunk_mode", `unknown value ${req.chunkMode}`);
  }
  return { key: { hardwareId, sessionId }, phase, seq: req.chunkSeq, mode: req.chunkMode };
}

function phaseOf(phase: RequestPhase): Phase {
  switch (phase) {
    case RequestPhase.COLLECT:
      return "collect";
    // Old clients send no phase for a one-shot request: UNSPECIFIED is COMMIT.
    case RequestPhase.UNSPECIFIED:
    case RequestPhase.COMMIT:
      return "commit";
    case RequestPhase.CANCEL:
      return "cancel";
    default:
      throw invalidArgument("phase", `unknown value ${phase}`);
  }
}

function screenshotOf(req: StreamRequest): Chunk["screenshot"] {
  // The three travel together: only a non-empty screenshot replaces them.
  if (!req.screenshot) return undefined;
  return { data: req.screenshot, width: req.screenWidth, height: req.screenHeight };
}

function audioOf(req: StreamRequest): Chunk["audio"] {
  const a = req.chunkAudio;
  if (!a || a.data.length === 0) return undefined;
  return { data: a.data, encoding: a.encoding, sampleRate: a.sampleRate, channels: a.channels };
}

/** A COLLECT's chunk. Its text is chunk_text; an old client's prompt counts when chunk_text is absent. */
export function collectChunkOf(req: StreamRequest, v: ValidRequest): Chunk {
  return {
    seq: v.seq,
    mode: v.mode,
    text: req.chunkText ?? req.prompt,
    audio: audioOf(req),
    screenshot: screenshotOf(req),
  };
}

/** A COMMIT's own pieces: chunk_text (with any audio and screenshot), then prompt. */
export function commitPiecesOf(req: StreamRequest, v: ValidRequest): Chunk[] {
  return [
    {
      seq: 0,
      mode: v.mode,
      text: req.chunkText ?? "",
      audio: audioOf(req),
      screenshot: screenshotOf(req),
    },
    { seq: 0, mode: v.mode, text: req.prompt },
  ];
}
