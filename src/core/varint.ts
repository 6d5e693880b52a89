/** Bytes of `value` as a protobuf unsigned varint (call ids and lengths: uint32). */
export function varintLength(value: number): number {
  let n = 1;
  for (let v = value >>> 7; v > 0; v >>>= 7) n++;
  return n;
}

/** Writes `value` as an unsigned varint at `at`; returns the offset after it. */
export function writeVarint(out: Uint8Array, at: number, value: number): number {
  let v = value >>> 0;
  while (v > 0x7f) {
    out[at++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  out[at++] = v;
  return at;
}
