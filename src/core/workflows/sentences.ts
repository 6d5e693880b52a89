/**
 * Splits text into sentences whose concatenation is exactly the text. A sentence
 * ends after a run of terminators, any closing quotes or brackets, and the
 * whitespace that follows; Latin terminators need that whitespace (or the end) so
 * "3.14" stays whole, CJK ones do not. One linear pass: a run of ten thousand
 * dots costs the same as ten thousand letters.
 */
export function splitSentences(text: string): string[] {
  const out: string[] = [];
  let start = 0;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (!isTerminator(c)) {
      i++;
      continue;
    }
    let j = i;
    let cjk = false;
    while (j < n && isTerminator(text.charCodeAt(j))) {
      if (isCjkTerminator(text.charCodeAt(j))) cjk = true;
      j++;
    }
    while (j < n && isCloser(text.charCodeAt(j))) j++;
    const wsStart = j;
    while (j < n && isSpace(text.charCodeAt(j))) j++;
    if (j === n || j > wsStart || cjk) {
      out.push(text.slice(start, j));
      start = j;
    }
    i = j;
  }
  if (start < n) out.push(text.slice(start));
  return out;
}

function isTerminator(c: number): boolean {
  // . ! ? … and the full-width 。！？
  return c === 0x2e || c === 0x21 || c === 0x3f || c === 0x2026 || isCjkTerminator(c);
}

function isCjkTerminator(c: number): boolean {
  return c === 0x3002 || c === 0xff01 || c === 0xff1f;
}

function isCloser(c: number): boolean {
  // " ' ” ’ ) ] 」 』
  return (
    c === 0x22 ||
    c === 0x27 ||
    c === 0x201d ||
    c === 0x2019 ||
    c === 0x29 ||
    c === 0x5d ||
    c === 0x300d ||
    c === 0x300f
  );
}

function isSpace(c: number): boolean {
  return (
    c === 0x20 ||
    (c >= 0x09 && c <= 0x0d) ||
    c === 0xa0 ||
    c === 0x3000 ||
    c === 0x2028 ||
    c === 0x2029
  );
}
