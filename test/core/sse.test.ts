import { describe, expect, it } from "vitest";
import { parseSse } from "../../src/core/voice/sse.js";

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
