/** One server-sent event (WHATWG HTML, "event stream interpretation"). */
export interface SseEvent {
  event: string;
  data: string;
  id?: string | undefined;
}

/**
 * Server-sent events from a byte stream, per the WHATWG rules: lines end in CRLF, LF or CR
 * (a CRLF cut between two chunks counts once), `data` lines join with "\n", one leading space
 * after the colon is dropped, comments and unknown fields are skipped, a BOM is ignored, and an
 * event is dispatched on a blank line only (a last event without one is dropped, like a browser
 * does). UTF-8 is decoded across chunk cuts. Linear in the input: no rescans of the buffer.
 */
export async function* parseSse(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<SseEvent> {
  const decoder = new TextDecoder();
  let carry = "";
  let lastWasCr = false;
  let data: string[] = [];
  let event = "";
  let id: string | undefined;
  let hasData = false;
  const line = (l: string): SseEvent | undefined => {
    if (l === "") {
      if (!hasData) {
        event = "";
        return undefined;
      }
      const out: SseEvent = { event: event || "message", data: data.join("\n"), id };
      data = [];
      event = "";
      hasData = false;
      return out;
    }
    if (l.charCodeAt(0) === 0x3a) return undefined; // ":" comment (keep-alives)
    const colon = l.indexOf(":");
    const field = colon < 0 ? l : l.slice(0, colon);
    let value = colon < 0 ? "" : l.slice(colon + 1);
    if (value.charCodeAt(0) === 0x20) value = value.slice(1);
    if (field === "data") {
      data.push(value);
      hasData = true;
    } else if (field === "event") event = value;
    else if (field === "id" && !value.includes("\0")) id = value;
    return undefined;
  };
  for await (const chunk of chunks) {
    let text = carry + decoder.decode(chunk, { stream: true });
    carry = "";
    let start = 0;
    if (lastWasCr && text.charCodeAt(0) === 0x0a) start = 1; // the LF of a CRLF cut in two
    lastWasCr = false;
    for (let i = start; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== 0x0a && c !== 0x0d) continue;
      const ev = line(text.slice(start, i));
      if (ev) yield ev;
      if (c === 0x0d) {
        if (i + 1 === text.length) lastWasCr = true;
        else if (text.charCodeAt(i + 1) === 0x0a) i++;
      }
      start = i + 1;
    }
    text = text.slice(start);
    carry = text;
  }
  carry += decoder.decode();
  // A final line without its end and blank line never completes an event.
}
