/**
 * The UNSPECIFIED-mode merge heuristic for old clients (docs/protocol.md §3): a chunk
 * whose normalised text shares a prefix with the buffer's covering at least half
 * of the buffer is a revised snapshot and replaces it; anything else is a delta
 * and is appended exactly as sent. Never drops a chunk for being a substring.
 */
export function mergeUnspecified(buffer: string, chunk: string): string {
  if (buffer.length === 0) return chunk;
  if (chunk.length === 0) return buffer;
  const a = normalise(buffer);
  // A buffer of only punctuation has nothing to revise; appending keeps it.
  if (a.length === 0) return buffer + chunk;
  const b = normalise(chunk);
  return commonPrefixLength(a, b) * 2 >= a.length ? chunk : buffer + chunk;
}

/** Lower case, letters (with their combining marks) and digits only, in any script. */
export function normalise(text: string): string {
  return text.toLowerCase().replace(NON_ALNUM, "");
}

// Combining marks stay: in Devanagari, Thai or Hebrew they distinguish words.
const NON_ALNUM = /[^\p{L}\p{M}\p{N}]+/gu;

function commonPrefixLength(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

/** UTF-8 byte length without allocating an encoded copy. */
export function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4;
        i++;
      } else bytes += 3;
    } else bytes += 3;
  }
  return bytes;
}
