import { fromBinary } from "@bufbuild/protobuf";
import { getTextEncoding } from "@bufbuild/protobuf/wire";
import { type StreamRequest, StreamRequestSchema } from "../gen/streaming_pb.js";
import { BINARY_READ_OPTIONS } from "./request-decoding.js";
import { varintLength } from "./varint.js";

/**
 * A StreamRequest from its binary form: exactly what `fromBinary(StreamRequestSchema, bytes,
 * BINARY_READ_OPTIONS)` returns or throws. protobuf-es decodes by reflection (a reflection
 * object with three Maps, a tag array per field, a zero message built from the descriptor):
 * ~7 µs and 3 KiB of garbage per COLLECT on the Node server, as much as the rest of core's
 * work on it. The messages clients send (text and ids, no audio) are read here directly;
 * anything else (audio, unknown fields, long varints, odd wire types, invalid UTF-8, a
 * truncated message) goes to protobuf-es, which gives its own answer or error.
 */
export function decodeStreamRequest(bytes: Uint8Array): StreamRequest {
  return (
    readPlainStreamRequest(bytes) ?? fromBinary(StreamRequestSchema, bytes, BINARY_READ_OPTIONS)
  );
}

// Tag bytes (field number << 3 | wire type) of the fields read here.
const PROMPT = (1 << 3) | 2;
const SCREENSHOT = (2 << 3) | 2;
const SCREEN_WIDTH = 3 << 3;
const SCREEN_HEIGHT = 4 << 3;
const HARDWARE_ID = (5 << 3) | 2;
const SESSION_ID = (6 << 3) | 2;
const PHASE = 7 << 3;
const CHUNK_SEQ = 8 << 3;
const CHUNK_TEXT = (9 << 3) | 2;
const CHUNK_MODE = 11 << 3;
const RESET_MEMORY = 12 << 3;

/** Varints of up to four bytes (< 2^28); a longer one is left to protobuf-es. */
const NOT_READ = -1;

/**
 * The request when it has only the fields above, each with its own wire type, varints under
 * 2^28 and valid UTF-8; undefined when it is anything else (nothing is thrown here).
 * Exported for the test that holds it to protobuf-es.
 */
export function readPlainStreamRequest(bytes: Uint8Array): StreamRequest | undefined {
  // The zero message as protobuf-es creates it: implicit-presence fields set, optional ones absent.
  const m: StreamRequest = {
    $typeName: "streaming.StreamRequest",
    prompt: "",
    hardwareId: "",
    sessionId: "",
    phase: 0,
    chunkSeq: 0,
    chunkMode: 0,
    resetMemory: false,
  };
  const end = bytes.byteLength;
  let pos = 0;
  while (pos < end) {
    const tag = bytes[pos++] as number;
    if ((tag & 7) === 2) {
      // Length-delimited: a string field.
      const len = varint(bytes, pos);
      if (len === NOT_READ) return undefined;
      pos += varintLength(len);
      if (pos + len > end) return undefined;
      const text = utf8(bytes.subarray(pos, pos + len));
      if (text === undefined) return undefined;
      pos += len;
      switch (tag) {
        case PROMPT:
          m.prompt = text;
          break;
        case SCREENSHOT:
          m.screenshot = text;
          break;
        case HARDWARE_ID:
          m.hardwareId = text;
          break;
        case SESSION_ID:
          m.sessionId = text;
          break;
        case CHUNK_TEXT:
          m.chunkText = text;
          break;
        default:
          return undefined;
      }
      continue;
    }
    const value = varint(bytes, pos);
    if (value === NOT_READ) return undefined;
    pos += varintLength(value);
    switch (tag) {
      case SCREEN_WIDTH:
        m.screenWidth = value;
        break;
      case SCREEN_HEIGHT:
        m.screenHeight = value;
        break;
      case PHASE:
        m.phase = value;
        break;
      case CHUNK_SEQ:
        m.chunkSeq = value;
        break;
      case CHUNK_MODE:
        m.chunkMode = value;
        break;
      case RESET_MEMORY:
        m.resetMemory = value !== 0;
        break;
      default:
        return undefined;
    }
  }
  return m;
}

/** The varint at `pos` when it has at most four bytes and ends before the message does. */
function varint(bytes: Uint8Array, pos: number): number {
  const end = Math.min(bytes.byteLength, pos + 4);
  let value = 0;
  for (let i = pos, shift = 0; i < end; i++, shift += 7) {
    const b = bytes[i] as number;
    value |= (b & 0x7f) << shift;
    // The shortest encoding only: protobuf-es reads a padded one (0x80 0x00) the same, but
    // its length would not follow from the value.
    if ((b & 0x80) === 0) return i > pos && b === 0 ? NOT_READ : value;
  }
  return NOT_READ;
}

/**
 * protobuf-es's own decoding of a string field (strict: proto3 strings are UTF-8), through
 * the process-wide setting it reads for every message (core's keeps byte order marks).
 */
function utf8(view: Uint8Array): string | undefined {
  if (view.byteLength === 0) return "";
  try {
    return getTextEncoding().decodeUtf8(view, true);
  } catch {
    return undefined;
  }
}
