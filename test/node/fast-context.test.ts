// FastHandlerContext.requestHeaderValue (the one header a COMMIT reads, ptt-resume-from)
// answers what requestHeader.get does on the Headers it would build from node:http2's
// headers: repeats joined, values trimmed, names in any case, absent ones null.
import type { IncomingHttpHeaders } from "node:http2";
import { describe, expect, it } from "vitest";
import { StreamingService } from "../../src/gen/streaming_pb.js";
import { FastHandlerContext } from "../../src/runtimes/node/fast-context.js";

const method = StreamingService.method.streamAudio;
const transport = { connection: {}, endStalled() {} };
const ctx = (headers: IncomingHttpHeaders) =>
  new FastHandlerContext(method, headers, new AbortController().signal, undefined, transport);

const headers: IncomingHttpHeaders = {
  ":path": "/streaming.StreamingService/StreamAudio",
  ":authority": "127.0.0.1:8080",
  "ptt-resume-from": " 3 ",
  "set-cookie": ["a=1", " b=2"],
  "x-empty": "",
  "x-tabs": "\tv\t",
};

describe("FastHandlerContext.requestHeaderValue", () => {
  it.each(["ptt-resume-from", "PTT-Resume-From", "set-cookie", "x-empty", "x-tabs", "x-absent"])(
    "%s: as requestHeader.get",
    (name) => {
      expect(ctx(headers).requestHeaderValue(name)).toBe(ctx(headers).requestHeader.get(name));
    },
  );

  it("reads the built Headers once they exist", () => {
    const c = ctx({ "x-a": "1" });
    c.requestHeader.set("x-a", "2");
    expect(c.requestHeaderValue("x-a")).toBe("2");
  });

  it("refuses a pseudo-header name as Headers does", () => {
    expect(() => ctx(headers).requestHeaderValue(":path")).toThrow(TypeError);
  });
});
