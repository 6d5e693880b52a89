import { create, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { encodeServerFrame } from "../../src/bridge/server/server-frame.js";
import { CANCEL_ACK_FRAME, COLLECT_ACK_FRAME } from "../../src/core/stream-audio.js";
import { ServerFrameSchema } from "../../src/gen/bridge_pb.js";
import { StreamResponseSchema } from "../../src/gen/streaming_pb.js";

// The hand-written encoding must be protobuf-es's, byte for byte (docs/protocol.md §6 is a wire format).
const reference = (callId: number, body: Parameters<typeof encodeServerFrame>[1]) =>
  toBinary(ServerFrameSchema, create(ServerFrameSchema, { callId, body }));

describe("encodeServerFrame", () => {
  const callId = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 2 ** 32 - 1 }));
  const text = fc.string({ unit: "grapheme", maxLength: 300 });

  it("CallEnd: code, message and metadata, any values", () => {
    fc.assert(
      fc.property(
        callId,
        text,
        text,
        fc.dictionary(text, text, { maxKeys: 6 }),
        (id, code, message, metadata) => {
          const body = { case: "end" as const, value: { code, message, metadata } };
          expect(encodeServerFrame(id, body)).toEqual(reference(id, body));
        },
      ),
    );
  });

  it("responses, as messages or init objects", () => {
    fc.assert(
      fc.property(callId, text, fc.boolean(), (id, value, asMessage) => {
        const init = { content: { case: "textChunk" as const, value } };
        const body = {
          case: "response" as const,
          value: asMessage ? create(StreamResponseSchema, init) : init,
        };
        expect(encodeServerFrame(id, body)).toEqual(reference(id, body));
      }),
    );
  });

  it("CallEnd: strings with lone surrogates and astral characters, as TextEncoder writes them", () => {
    const odd = ["\ud800", "a\udc00b", "\ud83d\ude00", "\ud83d", "\ud83dx", "é€", "x".repeat(200)];
    for (const s of odd) {
      const body = { case: "end" as const, value: { code: s, message: s, metadata: { [s]: s } } };
      expect(encodeServerFrame(300, body)).toEqual(reference(300, body));
    }
  });

  it("the COLLECT and CANCEL acks core hands out, encoded once, and new copies of them", () => {
    for (const ack of [COLLECT_ACK_FRAME, CANCEL_ACK_FRAME]) {
      const body = { case: "response" as const, value: ack };
      expect(encodeServerFrame(9, body)).toEqual(reference(9, body));
      const copy = { case: "response" as const, value: create(StreamResponseSchema, ack) };
      expect(encodeServerFrame(9, copy)).toEqual(reference(9, body));
    }
  });

  it("other bodies go through protobuf-es", () => {
    const body = {
      case: "interrupt" as const,
      value: { success: true, interruptedSessions: ["a"] },
    };
    expect(encodeServerFrame(7, body)).toEqual(reference(7, body));
    expect(encodeServerFrame(0, { case: undefined })).toEqual(reference(0, { case: undefined }));
  });
});
