import { create, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { ClientFrameSchema } from "../../src/gen/bridge_pb.js";
import { StreamRequestSchema } from "../../src/gen/streaming_pb.js";

// Malformed inputs, built from valid ones so that they get past the first checks: a protobuf
// StreamRequest (or bridge frame) with odd field values, then mangled bytes; envelopes whose
// flags and length lie; JSON with wrong types, unknown enum names and broken syntax.

const anyText = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.constantFrom("unknown", " hw ", "\u00a0hw\u00a0", "\ufeffhw", "a".repeat(200), ""),
);
const uuidish = fc.oneof(fc.uuid(), fc.string({ maxLength: 40 }));
const int32 = fc.oneof(fc.integer({ min: -5, max: 5 }), fc.integer());

const streamRequest = fc.record({
  hardwareId: fc.oneof(fc.constantFrom("fuzz-dev-1", "fuzz-dev-2"), anyText),
  sessionId: uuidish,
  phase: fc.oneof(fc.integer({ min: 0, max: 4 }), int32),
  chunkSeq: int32,
  chunkMode: fc.oneof(fc.integer({ min: 0, max: 3 }), int32),
  chunkText: fc.option(anyText, { nil: undefined }),
  prompt: anyText,
  screenshot: fc.option(fc.string({ maxLength: 60 }), { nil: undefined }),
});

/** Encoded StreamRequests of odd but well-formed values. */
const requestBytes = streamRequest.map((r) =>
  toBinary(StreamRequestSchema, create(StreamRequestSchema, r)),
);

/** Bytes mangled: flips, cuts, insertions, overwrites with varint-breaking bytes. */
function mangled(base: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  const edit = fc.record({
    kind: fc.constantFrom("flip", "cut", "insert", "overwrite"),
    at: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 12 }),
  });
  return fc.tuple(base, fc.array(edit, { minLength: 1, maxLength: 4 })).map(([b, edits]) => {
    let out = b;
    for (const e of edits) {
      const at = out.length === 0 ? 0 : e.at % out.length;
      if (e.kind === "flip" && out.length > 0) {
        out = out.slice();
        out[at] = (out[at] as number) ^ ((e.bytes[0] as number) | 1);
      } else if (e.kind === "cut") {
        out = out.slice(0, at);
      } else if (e.kind === "insert") {
        out = new Uint8Array([...out.slice(0, at), ...e.bytes, ...out.slice(at)]);
      } else {
        out = new Uint8Array([
          ...out.slice(0, at),
          ...e.bytes.map((x) => x | 0x80),
          ...out.slice(at + e.bytes.length),
        ]);
      }
    }
    return out;
  });
}

/** A protobuf message body: valid-but-odd, mangled, or noise. */
export const messageBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  requestBytes,
  mangled(requestBytes),
  fc.uint8Array({ maxLength: 512 }),
);

/** One or more length-prefixed envelopes around message bodies; flags and lengths may lie. */
export const envelopedBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 3, arbitrary: messageBytes.map((m) => envelope(0, m)) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(
        fc.array(
          fc.record({
            flags: fc.oneof(fc.constantFrom(0, 1, 2, 0x80), fc.integer({ min: 0, max: 255 })),
            lie: fc.option(fc.oneof(fc.nat({ max: 64 }), fc.constant(0xffffffff), fc.nat()), {
              nil: undefined,
            }),
            body: messageBytes,
          }),
          { minLength: 1, maxLength: 3 },
        ),
        fc.nat({ max: 8 }),
      )
      .map(([parts, cut]) => {
        const joined = concat(parts.map((p) => envelope(p.flags, p.body, p.lie)));
        return cut > 0 && cut < joined.length ? joined.slice(0, joined.length - cut) : joined;
      }),
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }) },
);

const jsonRequest = fc.record(
  {
    hardwareId: fc.oneof(fc.constant("fuzz-dev-3"), fc.jsonValue()),
    sessionId: fc.oneof(fc.uuid(), fc.jsonValue()),
    phase: fc.oneof(
      fc.constantFrom(
        "REQUEST_PHASE_COLLECT",
        "REQUEST_PHASE_COMMIT",
        "REQUEST_PHASE_PAUSE",
        "NOPE",
        "",
        "request_phase_collect",
      ),
      fc.integer(),
      fc.jsonValue(),
    ),
    chunkSeq: fc.oneof(fc.integer(), fc.string(), fc.double(), fc.jsonValue()),
    chunkMode: fc.oneof(fc.constantFrom("CHUNK_MODE_DELTA", "CHUNK_MODE_WEIRD"), fc.jsonValue()),
    chunkText: fc.oneof(fc.string(), fc.jsonValue()),
    chunkAudio: fc.oneof(fc.record({ data: fc.string(), encoding: fc.string() }), fc.jsonValue()),
  },
  { requiredKeys: [] },
);

/** JSON bodies: odd values, wrong types, broken syntax, not JSON at all. */
export const jsonText: fc.Arbitrary<string> = fc.oneof(
  jsonRequest.map((o) => JSON.stringify(o)),
  jsonRequest.chain((o) => {
    const s = JSON.stringify(o);
    return fc.nat({ max: Math.max(0, s.length - 1) }).map((n) => s.slice(0, n));
  }),
  fc.json(),
  fc.string({ unit: "binary", maxLength: 200 }),
);

export const jsonEnveloped: fc.Arbitrary<Uint8Array> = jsonText.map((t) =>
  envelope(0, new TextEncoder().encode(t)),
);

/** Bridge messages: ClientFrames around odd requests, mangled frames, noise. */
const frameBytes = fc
  .record({
    callId: fc.oneof(fc.integer({ min: 0, max: 20 }), fc.nat()),
    body: fc.oneof(
      streamRequest.map((value) => ({ case: "streamAudio" as const, value })),
      fc.constant({ case: "cancel" as const, value: {} }),
      anyText.map((hardwareId) => ({ case: "interrupt" as const, value: { hardwareId } })),
      fc.constant({ case: undefined }),
    ),
  })
  .map((f) => toBinary(ClientFrameSchema, create(ClientFrameSchema, f as never)));

export const bridgeMessages: fc.Arbitrary<Uint8Array> = fc.oneof(
  frameBytes,
  mangled(frameBytes),
  fc.uint8Array({ maxLength: 256 }),
);

function envelope(flags: number, body: Uint8Array, lie?: number): Uint8Array {
  const out = new Uint8Array(5 + body.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, lie ?? body.length);
  out.set(body, 5);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
