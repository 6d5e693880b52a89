import { splitSentences } from "../workflows/sentences.js";

/**
 * Groups streamed tokens into speakable pieces: the first piece goes out as soon as it is a
 * whole sentence, later ones once they reach `minChars` (fewer, longer pieces sound better
 * and cost fewer speech requests). A terminator at the very end of what arrived so far is
 * held until the next token shows it ends a sentence ("3." may become "3.14"); sentence ends
 * are those of splitSentences, so the pieces concatenate to exactly the streamed text.
 */
export class SentenceGrouper {
  private held = "";
  private group = "";
  private emitted = 0;

  constructor(
    private readonly minChars = 60,
    /** A run without any sentence end is cut at its last space past this length. */
    private readonly maxChars = 300,
  ) {}

  /** Adds a token; returns the pieces ready to go out, in order. */
  push(token: string): string[] {
    this.held += token;
    const out: string[] = [];
    const sentences = splitSentences(this.held);
    // The last one may still grow (or its terminator may turn out not to end it).
    const last = sentences.pop() ?? "";
    for (const s of sentences) this.add(s, out);
    this.held = last;
    if (endsSentence(last)) {
      this.add(last, out);
      this.held = "";
    } else if (this.held.length > this.maxChars) {
      const cut = lastSpace(this.held);
      if (cut > 0) {
        this.add(this.held.slice(0, cut), out);
        this.held = this.held.slice(cut);
      }
    }
    return out;
  }

  /** The rest, when the stream ended ("" when nothing is left). */
  flush(): string {
    const rest = this.group + this.held;
    this.group = "";
    this.held = "";
    return rest;
  }

  private add(sentence: string, out: string[]): void {
    this.group += sentence;
    if (this.emitted === 0 || this.group.length >= this.minChars) {
      out.push(this.group);
      this.group = "";
      this.emitted++;
    }
  }
}

/** Ends in terminator(s), optional closers, then whitespace: nothing that follows can undo it. */
function endsSentence(s: string): boolean {
  return /[.!?…。！？]["'”’)\]」』]*\s+$/u.test(s);
}

function lastSpace(s: string): number {
  const m = /\s\S*$/u.exec(s);
  return m ? m.index + 1 : -1;
}

/** The grouped pieces of a token stream. */
export async function* groupSentences(
  tokens: AsyncIterable<string>,
  grouper = new SentenceGrouper(),
): AsyncGenerator<string> {
  for await (const token of tokens) yield* grouper.push(token);
  const rest = grouper.flush();
  if (rest.length > 0) yield rest;
}
