/**
 * Length-prefixed frames over a byte stream: how a Durable Object streams a call's
 * ServerFrames back to the Worker in one HTTP response body.
 */
export function lengthPrefixed(frame: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + frame.byteLength);
  new DataView(out.buffer).setUint32(0, frame.byteLength);
  out.set(frame, 4);
  return out;
}

/** The frames of `body`; a reader that stops early cancels the body (the sender sees it). */
export async function* readFrames(body: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  const reader = body.getReader();
  let buf = new Uint8Array(0);
  let finished = false;
  try {
    for (;;) {
      while (buf.byteLength >= 4) {
        const n = new DataView(buf.buffer, buf.byteOffset, 4).getUint32(0);
        if (buf.byteLength < 4 + n) break;
        yield buf.slice(4, 4 + n);
        buf = buf.slice(4 + n);
      }
      const { done, value } = await reader.read();
      if (done) {
        finished = true;
        return;
      }
      const next = new Uint8Array(buf.byteLength + value.byteLength);
      next.set(buf);
      next.set(value, buf.byteLength);
      buf = next;
    }
  } finally {
    if (!finished) reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}
