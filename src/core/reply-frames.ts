import { create } from "@bufbuild/protobuf";
import { type StreamResponse, StreamResponseSchema } from "../gen/streaming_pb.js";
import type { ReplyPart } from "./ports.js";

const BYTES_PER_SAMPLE: Record<string, number> = {
  int8: 1,
  uint8: 1,
  int16: 2,
  int32: 4,
  float32: 4,
  float64: 8,
};

export function endFrame(message: string): StreamResponse {
  return create(StreamResponseSchema, { content: { case: "endMessage", value: message } });
}

export function errorFrame(message: string): StreamResponse {
  return create(StreamResponseSchema, { content: { case: "errorMessage", value: message } });
}

/** One workflow part as a wire frame, or null for a part that must not be sent (empty audio). */
export function replyFrame(part: ReplyPart, sessionId: string): StreamResponse | null {
  switch (part.kind) {
    case "text":
      return create(StreamResponseSchema, { content: { case: "textChunk", value: part.text } });
    case "audio": {
      if (part.data.length === 0) return null;
      const channels = Math.max(1, part.channels);
      const width = BYTES_PER_SAMPLE[part.dtype] ?? 1;
      const samples = Math.floor(part.data.length / (width * channels));
      return create(StreamResponseSchema, {
        content: {
          case: "audioChunk",
          value: {
            audioData: part.data,
            dtype: part.dtype,
            shape: [samples, channels],
            sampleRate: part.sampleRate,
            channels,
          },
        },
      });
    }
    case "action":
      return create(StreamResponseSchema, {
        content: {
          case: "actionMessage",
          value: { actionJson: part.json, sessionId, featureId: part.featureId },
        },
      });
  }
}
