// core's StreamRequest decoder (src/core/stream-request-binary.ts) against protobuf-es's
// fromBinary with the options every transport uses: the same message (own properties,
// absent optional fields and all) or the same error, for valid messages, for messages the
// fast reader leaves to protobuf-es, and for bytes that are not a message at all.
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { BINARY_READ_OPTIONS } from "../../src/core/request-decoding.js";
import {
  decodeStreamRequest,
  readPlainStreamRequest,
} from "../../src/core/stream-request-binary.js";
import { keepByteOrderMarks } from "../../src/core/text-decoding.js";
import { StreamRequestSchema } from "../../src/gen/streaming_pb.js";

type Init = MessageInitShape<typeof StreamRequestSchema>;

/** What protobuf-es answers: the message, or its error's message. */
function reference(bytes: Uint8Array): unknown {
  try {
    return fromBinary(StreamRequestSchema, bytes, BINARY_READ_OPTIONS);
  } catch (err) {
    return { error: String(err) };
  }
}

function ours(bytes: Uint8Array): unknown {
  try {
    return decodeStreamRequest(bytes);
  } catch (err) {
    return { error: String(err) };
  }
}

const encode = (init: Init) => toBinary(StreamRequestSchema, create(StreamRequestSchema, init));

// Text as clients send it, and what they should not: byte order marks, astral characters.
const text = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "grapheme", maxLength: 20 }),
  fc.constantFrom("", "\uFEFF", "\uFEFFdev-1", "a\uFEFFb", "😀", "\u0000"),
);
const small = fc.integer({ min: 0, max: 2 ** 28 - 1 });
/** A request of the fields the fast reader reads, each present or absent. */
const plainInit: fc.Arbitrary<Init> = fc.record(
  {
    prompt: text,
    screenshot: text,
    screenWidth: small,
    screenHeight: small,
    hardwareId: text,
    sessionId: text,
    phase: fc.integer({ min: 0, max: 6 }),
    chunkSeq: small,
    chunkText: text,
    chunkMode: fc.integer({ min: 0, max: 5 }),
    resetMemory: fc.boolean(),
  },
  { requiredKeys: [] },
);
/** Anything protobuf-es can encode: audio, negative and large numbers too. */
const anyInit: fc.Arbitrary<Init> = fc.record(
  {
    prompt: text,
    screenshot: text,
    screenWidth: fc.integer(),
    screenHeight: fc.integer(),
    hardwareId: text,
    sessionId: text,
    phase: fc.integer({ min: -3, max: 2 ** 31 - 1 }),
    chunkSeq: fc.integer(),
    chunkText: text,
    chunkAudio: fc.record({
      data: fc.uint8Array({ maxLength: 16 }),
      encoding: text,
      sampleRate: fc.integer(),
      channels: fc.integer(),
    }),
    chunkMode: fc.integer({ min: -1, max: 9 }),
    resetMemory: fc.boolean(),
  },
  { requiredKeys: [] },
);

describe("decodeStreamRequest", () => {
  beforeAll(() => keepByteOrderMarks());

  it("reads every plain request itself, as protobuf-es does", () => {
    fc.assert(
      fc.property(plainInit, (init) => {
        const bytes = encode(init);
        const plain = readPlainStreamRequest(bytes);
        expect(plain?.$typeName).toBe("streaming.StreamRequest");
        expect(plain).toStrictEqual(reference(bytes));
      }),
      { numRuns: 1000 },
    );
  });

  it("answers any encodable request as protobuf-es does", () => {
    fc.assert(
      fc.property(anyInit, (init) => {
        const bytes = encode(init);
        expect(ours(bytes)).toStrictEqual(reference(bytes));
      }),
      { numRuns: 1000 },
    );
  });

  it("answers changed, cut and extended requests as protobuf-es does (message or error)", () => {
    const edit = fc.tuple(
      plainInit,
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
      fc.nat(),
      fc.uint8Array({ maxLength: 6 }),
    );
    fc.assert(
      fc.property(edit, ([init, changes, cut, extra]) => {
        const encoded = encode(init);
        const bytes = new Uint8Array([
          ...encoded.subarray(0, encoded.length - (cut % 4)),
          ...extra,
        ]);
        for (const [at, b] of changes) if (bytes.length > 0) bytes[at % bytes.length] = b;
        expect(ours(bytes)).toStrictEqual(reference(bytes));
      }),
      { numRuns: 3000 },
    );
  });

  it("answers arbitrary bytes as protobuf-es does", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
        expect(ours(bytes)).toStrictEqual(reference(bytes));
      }),
      { numRuns: 3000 },
    );
  });

  it.each([
    ["a repeated field (the last one wins)", [0x2a, 1, 0x61, 0x2a, 1, 0x62]],
    ["a padded varint", [0x40, 0x81, 0x00]],
    // Read as one byte long, the padding would shift the rest into another valid message.
    ["a padded string length", [0x2a, 0x81, 0x00, 0x60, 0x01]],
    ["a five-byte varint", [0x40, 0xff, 0xff, 0xff, 0xff, 0x0f]],
    ["a negative int32 (ten bytes)", [0x40, ...Array(9).fill(0xff), 0x01]],
    ["an unknown field", [0x68, 0x01, 0x2a, 1, 0x61]],
    ["a string field sent as a varint", [0x28, 0x05]],
    ["a varint field sent as bytes", [0x42, 0x01, 0x07]],
    ["invalid UTF-8", [0x2a, 2, 0xc3, 0x28]],
    ["a string longer than the message", [0x2a, 5, 0x61]],
    ["a truncated varint", [0x40, 0x80]],
    ["a zero tag", [0x00, 0x01]],
    ["a two-byte tag", [0x82, 0x01, 0x00]],
    ["reset_memory as 2", [0x60, 0x02]],
    ["chunk_audio", [0x52, 0x02, 0x0a, 0x00]],
  ])("%s: as protobuf-es", (_, raw) => {
    const bytes = new Uint8Array(raw as number[]);
    expect(ours(bytes)).toStrictEqual(reference(bytes));
  });

  it("keeps a byte order mark, as core's protobuf-es setting does", () => {
    const bytes = encode({ hardwareId: "\uFEFFdev-1" });
    expect(readPlainStreamRequest(bytes)?.hardwareId).toBe("\uFEFFdev-1");
  });
});
