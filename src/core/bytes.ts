/**
 * The pieces in order, copied into one new array, even a single piece: the Deno KV driver tells
 * kept audio pieces from new ones by object identity, so a result must never be a piece itself.
 */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.byteLength;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
