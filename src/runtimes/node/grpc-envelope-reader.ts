import { Code, ConnectError } from "@connectrpc/connect";

/** One 5-byte-framed gRPC message: flags byte, then the message bytes. */
export interface Envelope {
  flags: number;
  data: Uint8Array;
}

/**
 * Splits a gRPC request body into envelopes as its bytes arrive, refusing a message whose
 * declared length is over `readMaxBytes` as soon as its 5-byte prefix is in, before the
 * message itself is read. Errors carry connect's codes and messages, word for word.
 */
export class EnvelopeReader {
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  /** Length of the message being read; -1 while waiting for a prefix. */
  private need = -1;
  private flags = 0;
  private readonly ready: Envelope[] = [];

  constructor(private readonly readMaxBytes: number) {}

  /**
   * Adds bytes; returns the envelopes they complete (usually none or one) in an array that
   * the next push reuses. Throws on a limit.
   */
  push(chunk: Uint8Array): readonly Envelope[] {
    const out = this.ready;
    out.length = 0;
    // The usual request: one DATA chunk that is exactly one whole envelope. Its message is a
    // view of the chunk, without queueing it.
    if (this.buffered === 0 && this.need < 0 && chunk.byteLength >= 5) {
      const size = this.sizeOf(chunk);
      if (chunk.byteLength === 5 + size) {
        out.push({ flags: chunk[0] as number, data: chunk.subarray(5) });
        return out;
      }
    }
    this.chunks.push(chunk);
    this.buffered += chunk.byteLength;
    for (;;) {
      if (this.need < 0) {
        if (this.buffered < 5) return out;
        const head = this.take(5);
        this.need = this.sizeOf(head);
        this.flags = head[0] as number;
      }
      if (this.buffered < this.need) return out;
      out.push({ flags: this.flags, data: this.take(this.need) });
      this.need = -1;
    }
  }

  /** The message length a 5-byte prefix declares; throws when it is over the limit. */
  private sizeOf(head: Uint8Array): number {
    const size =
      (((head[1] as number) << 24) |
        ((head[2] as number) << 16) |
        ((head[3] as number) << 8) |
        (head[4] as number)) >>>
      0;
    if (size > this.readMaxBytes) {
      // connect-es assertReadMaxBytes(readMaxBytes, length, true)
      throw new ConnectError(
        `message size ${size} is larger than configured readMaxBytes ${this.readMaxBytes}`,
        Code.ResourceExhausted,
      );
    }
    return size;
  }

  /**
   * True when bytes of a message were cut off by the end of the body. Like connect, a lone
   * prefix whose message never came is not "incomplete": the call then has no message.
   */
  get incomplete(): boolean {
    return this.buffered > 0;
  }

  /** The next `n` buffered bytes; a view, not a copy, when they sit in one chunk. */
  private take(n: number): Uint8Array {
    if (n === 0) return new Uint8Array(0);
    this.buffered -= n;
    const first = this.chunks[0] as Uint8Array;
    if (first.byteLength >= n) {
      if (first.byteLength === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const c = this.chunks[0] as Uint8Array;
      const k = Math.min(c.byteLength, n - at);
      out.set(c.subarray(0, k), at);
      at += k;
      if (k === c.byteLength) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    return out;
  }
}
