import { describe, expect, it } from "vitest";
import { parseSse } from "../../src/core/voice/sse.js";
import { retryAfterMs } from "../../src/core/voice/upstream.js";

async function events(text: string, cuts: number[] = []) {
  const bytes = new TextEncoder().encode(text);
  const points = [0, ...cuts.filter((c) => c > 0 && c < bytes.length), bytes.length];
  async function* chunks() {
    for (let i = 0; i + 1 < points.length; i++) yield bytes.slice(points[i], points[i + 1]);
  }
  const out: { event: string; data: string }[] = [];
  for await (const ev of parseSse(chunks())) out.push({ event: ev.event, data: ev.data });
  return out;
}

describe("parseSse", () => {
  const stream =
    "\uFEFF: keep-alive\r\n" +
    'data: {"a":"é"}\r\n\r\n' +
    "event: ping\ndata:no-space\n\n" +
    "data: line one\rdata: line two\r\r" +
    "id: 7\nretry: 100\nunknown: x\ndata:  two spaces\n\n" +
    "data: [DONE]\n\n" +
    "data: never dispatched";

  const expected = [
    { event: "message", data: '{"a":"é"}' },
    { event: "ping", data: "no-space" },
    { event: "message", data: "line one\nline two" },
    { event: "message", data: " two spaces" },
    { event: "message", data: "[DONE]" },
  ];

  it("follows the WHATWG rules (BOM, comments, CRLF/CR/LF, multi-line data, fields)", async () => {
    expect(await events(stream)).toEqual(expected);
  });

  it("gives the same events wherever the network cuts the bytes (CRLF and UTF-8 included)", async () => {
    const n = new TextEncoder().encode(stream).length;
    for (let cut = 1; cut < n; cut++) {
      expect(await events(stream, [cut, cut + 1, cut + 5])).toEqual(expected);
    }
  });

  it("ignores blank lines that carry no data", async () => {
    expect(await events("\n\n\nevent: x\n\ndata: y\n\n")).toEqual([
      { event: "message", data: "y" },
    ]);
  });
});

describe("retryAfterMs", () => {
  it("reads retry-after-ms, then retry-after in seconds or as an HTTP date", () => {
    const now = Date.UTC(2026, 0, 1, 0, 0, 0);
    const h = (init: Record<string, string>) => new Headers(init);
    expect(retryAfterMs(h({ "retry-after-ms": "1500", "retry-after": "9" }), now)).toBe(1500);
    expect(retryAfterMs(h({ "retry-after": "2" }), now)).toBe(2000);
    expect(retryAfterMs(h({ "retry-after": "Thu, 01 Jan 2026 00:00:03 GMT" }), now)).toBe(3000);
    expect(retryAfterMs(h({ "retry-after": "soon" }), now)).toBeUndefined();
    expect(retryAfterMs(h({}), now)).toBeUndefined();
  });
});
