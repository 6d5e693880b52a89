import { create, isMessage, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { CANCEL_ACK_FRAME, COLLECT_ACK_FRAME } from "../../core/stream-audio.js";
import { varintLength, writeVarint } from "../../core/varint.js";
import { ServerFrameSchema } from "../../gen/bridge_pb.js";
import { StreamResponseSchema } from "../../gen/streaming_pb.js";

type ServerBody = MessageInitShape<typeof ServerFrameSchema>["body"];

/** The acks every COLLECT and CANCEL answers with, encoded once (core hands out these objects). */
const ENCODED_ACKS = new Map<unknown, Uint8Array>(
  [COLLECT_ACK_FRAME, CANCEL_ACK_FRAME].map((f) => [f, toBinary(StreamResponseSchema, f)]),
);

const utf8 = new TextEncoder();

/**
 * toBinary(ServerFrameSchema, create(ServerFrameSchema, { callId, body })), byte for byte, with
 * the two frames every call sends written by hand: a StreamAudio response (the message itself
 * is still encoded by protobuf-es, but for the acks, encoded once) and the CallEnd, sized first
 * and written into one array. Reflection-based encoding of the CallEnd and its metadata map was
 * a third of the bridge's own CPU per COLLECT ack; TextEncoder.encode per metadata string then
 * was a fifth of it (a call into C++ for strings of ten ASCII characters).
 */
export function encodeServerFrame(callId: number, body: ServerBody): Uint8Array {
  if (body?.case === "response") {
    const init = body.value as MessageInitShape<typeof StreamResponseSchema>;
    const known = ENCODED_ACKS.get(init);
    if (known !== undefined) return frame(callId, 2, known);
    const value = isMessage(init, StreamResponseSchema) ? init : create(StreamResponseSchema, init);
    return frame(callId, 2, toBinary(StreamResponseSchema, value));
  }
  if (body?.case === "end") {
    const end = body.value as {
      code?: string;
      message?: string;
      metadata?: Record<string, string>;
    };
    return encodeCallEnd(callId, end.code ?? "", end.message ?? "", end.metadata ?? {});
  }
  return toBinary(ServerFrameSchema, create(ServerFrameSchema, { callId, body }));
}

/** ServerFrame { call_id = 1; end = 4 CallEnd { code = 1; message = 2; map metadata = 3 } }. */
function encodeCallEnd(
  callId: number,
  code: string,
  message: string,
  metadata: Record<string, string>,
): Uint8Array {
  const entries = Object.entries(metadata);
  // Sizes first: every length prefix is known before a byte is written.
  const codeLen = utf8Length(code);
  const messageLen = utf8Length(message);
  let bodyLen = 0;
  if (codeLen > 0) bodyLen += fieldLength(codeLen);
  if (messageLen > 0) bodyLen += fieldLength(messageLen);
  const entryLens: number[] = [];
  for (const [k, v] of entries) {
    const kl = utf8Length(k);
    const vl = utf8Length(v);
    entryLens.push(kl, vl);
    bodyLen += fieldLength(fieldLength(kl) + fieldLength(vl));
  }
  const total = (callId !== 0 ? 1 + varintLength(callId) : 0) + fieldLength(bodyLen);
  const out = new Uint8Array(total);
  let at = 0;
  if (callId !== 0) {
    out[at++] = 0x08;
    at = writeVarint(out, at, callId);
  }
  at = writeTag(out, at, 4, bodyLen);
  if (codeLen > 0) at = writeString(out, writeTag(out, at, 1, codeLen), code, codeLen);
  if (messageLen > 0) at = writeString(out, writeTag(out, at, 2, messageLen), message, messageLen);
  for (let i = 0; i < entries.length; i++) {
    const [k, v] = entries[i] as [string, string];
    const kl = entryLens[2 * i] as number;
    const vl = entryLens[2 * i + 1] as number;
    at = writeTag(out, at, 3, fieldLength(kl) + fieldLength(vl));
    at = writeString(out, writeTag(out, at, 1, kl), k, kl);
    at = writeString(out, writeTag(out, at, 2, vl), v, vl);
  }
  return out;
}

/** ServerFrame { call_id = 1; <oneof field> = message bytes }. */
function frame(callId: number, fieldNo: number, message: Uint8Array): Uint8Array {
  const out = new Uint8Array(
    (callId !== 0 ? 1 + varintLength(callId) : 0) + fieldLength(message.byteLength),
  );
  let at = 0;
  if (callId !== 0) {
    out[at++] = 0x08;
    at = writeVarint(out, at, callId);
  }
  out.set(message, writeTag(out, at, fieldNo, message.byteLength));
  return out;
}

/** A length-delimited field's size: tag, length, bytes. */
function fieldLength(bytes: number): number {
  return 1 + varintLength(bytes) + bytes;
}

function writeTag(out: Uint8Array, at: number, fieldNo: number, length: number): number {
  out[at] = (fieldNo << 3) | 2;
  return writeVarint(out, at + 1, length);
}

/** Writes `s`, whose UTF-8 length is `len`; ASCII by hand, the rest by encodeInto. */
function writeString(out: Uint8Array, at: number, s: string, len: number): number {
  if (len === s.length) {
    for (let i = 0; i < len; i++) out[at + i] = s.charCodeAt(i);
  } else {
    utf8.encodeInto(s, out.subarray(at, at + len));
  }
  return at + len;
}

/**
 * Bytes of `s` in UTF-8 as TextEncoder writes it: a lone surrogate becomes U+FFFD (3 bytes),
 * as protobuf-es's encoder does too.
 */
function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}
