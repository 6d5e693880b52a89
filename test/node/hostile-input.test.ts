// Issue 11's defects in what a request carries, each through real sockets against the Node
// server (gRPC with the fast path on and off, Connect and gRPC-Web over HTTP/1.1): unknown
// enum names, overlong deadlines, undecodable bodies, missing messages, bad envelopes,
// unknown methods and encodings, look-alike hardware ids.
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { create, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectRouterOptions } from "../../src/core/request-decoding.js";
import {
  RequestPhase,
  StreamingService,
  type StreamRequest,
  StreamRequestSchema,
} from "../../src/gen/streaming_pb.js";
import {
  createGrpcFastPath,
  installStreamHandler,
} from "../../src/runtimes/node/grpc-fast-path.js";
import { type NodeServer, startNodeServer } from "../../src/runtimes/node/server.js";
import {
  collect,
  newDevice,
  newSession,
  replyText,
  type StreamingClient,
  streamAudio,
} from "../contract/calls.js";
import { envelope, envelopes, grpcRaw, h2Request, SA } from "../support/raw-rpc.js";

const ECHO_DELAY_MS = 30;

interface Servers {
  fast: NodeServer;
  slow: NodeServer;
}

/** Connect streaming JSON over HTTP/1.1 (fetch): the frames and the end-stream error. */
async function connectJson(
  baseUrl: string,
  json: string,
  headers: Record<string, string> = {},
): Promise<{ frames: unknown[]; code: string | undefined; message: string }> {
  const res = await fetch(`${baseUrl}${SA}`, {
    method: "POST",
    headers: { "content-type": "application/connect+json", ...headers },
    body: envelope(json),
  });
  const parts = envelopes(Buffer.from(await res.arrayBuffer()));
  const frames: unknown[] = [];
  let code: string | undefined;
  let message = "";
  for (const p of parts) {
    const value = JSON.parse(p.data.toString("utf8"));
    if ((p.flags & 2) === 2) {
      code = value.error?.code;
      message = value.error?.message ?? "";
    } else frames.push(value);
  }
  return { frames, code, message };
}

/** A request body whose hardware_id (field 5) is not UTF-8. */
function invalidUtf8Request(sessionId: string): Uint8Array {
  const w = new BinaryWriter();
  w.tag(5, 2).bytes(new Uint8Array([0x64, 0x65, 0x76, 0xff, 0xfe]));
  w.tag(6, 2).string(sessionId);
  w.tag(7, 0).int32(RequestPhase.COLLECT);
  return w.finish();
}

function requestBytes(init: Parameters<typeof create<typeof StreamRequestSchema>>[1]): Uint8Array {
  return toBinary(StreamRequestSchema, create(StreamRequestSchema, init));
}

/** A node:http2 server decoding as ptt-edge does, whose StreamAudio reports what it got. */
async function recordingServer(fast: boolean, seen: (req: StreamRequest) => void) {
  const shutdown = new AbortController();
  const impl = {
    async *streamAudio(req: StreamRequest) {
      seen(req);
      yield { content: { case: "endMessage" as const, value: "ok" } };
    },
  };
  const server = http2.createServer(
    {},
    connectNodeAdapter({
      ...connectRouterOptions(1 << 20, shutdown.signal),
      routes: (r) => r.service(StreamingService, impl),
    }),
  );
  if (fast) {
    installStreamHandler(
      server,
      createGrpcFastPath(StreamingService, impl, {
        readMaxBytes: 1 << 20,
        shutdownSignal: shutdown.signal,
      }),
    );
  }
  const sessions = new Set<http2.Http2Session>();
  server.on("session", (s) => sessions.add(s));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sessions) s.destroy();
        server.close(() => resolve());
      }),
  };
}

describe("hostile input (issue 11)", () => {
  const s = {} as Servers;
  let client: StreamingClient;
  beforeAll(async () => {
    const config = { echoDelayMs: ECHO_DELAY_MS };
    [s.fast, s.slow] = await Promise.all([
      startNodeServer({ port: 0, config, grpcFastPath: true }),
      startNodeServer({ port: 0, config, grpcFastPath: false }),
    ]);
    client = createClient(StreamingService, createGrpcTransport({ baseUrl: s.fast.url }));
  });
  afterAll(async () => {
    await Promise.all([s.fast?.close(0), s.slow?.close(0)]);
  });

  it("an unknown enum name over Connect JSON is INVALID_ARGUMENT and leaves the hold open (#1)", async () => {
    const hw = newDevice();
    const sid = newSession();
    const ack = await streamAudio(client, collect(hw, sid, 1, "keep me"));
    expect(ack.code).toBeUndefined();
    for (const phase of ['"REQUEST_PHASE_PAUSE"', '"NOPE"', '""', '"request_phase_collect"']) {
      const r = await connectJson(
        s.fast.url,
        `{"hardwareId":"${hw}","sessionId":"${sid}","phase":${phase},"prompt":"x"}`,
      );
      expect(r.code, phase).toBe("invalid_argument");
      expect(r.message).toContain("phase");
      expect(r.message).toContain(phase.slice(1, -1));
      // Old clients read the reason from the error_message frame.
      expect(r.frames).toEqual([{ errorMessage: r.message }]);
    }
    const mode = await connectJson(
      s.fast.url,
      `{"hardwareId":"${hw}","sessionId":"${sid}","phase":"REQUEST_PHASE_COLLECT","chunkSeq":2,"chunkText":"y","chunkMode":"CHUNK_MODE_WEIRD"}`,
    );
    expect(mode.code).toBe("invalid_argument");
    expect(mode.message).toContain("CHUNK_MODE_WEIRD");
    // The hold is untouched: the real COMMIT gets what was collected.
    const reply = await streamAudio(client, { hardwareId: hw, sessionId: sid, phase: 2 });
    expect(reply.code).toBeUndefined();
    expect(replyText(reply)).toBe("keep me");
  });

  it("a deadline past 2^31-1 ms is no deadline, on every transport (#2)", async () => {
    const run = async (
      server: NodeServer,
      send: (hw: string, sid: string) => Promise<{ text: string; code?: string }>,
    ) => {
      const hw = newDevice();
      const sid = newSession();
      // Three sentences: the reply takes at least 2 × ECHO_DELAY_MS, far past a 1 ms timer.
      const held = requestBytes({
        hardwareId: hw,
        sessionId: sid,
        phase: 1,
        chunkSeq: 1,
        chunkText: "One. Two. Three.",
      });
      expect((await grpcRaw(server.url, envelope(held))).status).toBe("0");
      return send(hw, sid);
    };
    for (const server of [s.fast, s.slow]) {
      for (const timeout of ["600H", "99999999H", "2147484S"]) {
        const r = await run(server, async (hw, sid) => {
          const res = await grpcRaw(
            server.url,
            envelope(requestBytes({ hardwareId: hw, sessionId: sid, phase: 2 })),
            { "grpc-timeout": timeout },
          );
          return {
            text: res.frames.map((f) => (f.case === "textChunk" ? f.value : "")).join(""),
            code: res.status,
          };
        });
        expect(r, `${server === s.fast ? "fast" : "connect"} grpc-timeout ${timeout}`).toEqual({
          text: "One. Two. Three.",
          code: "0",
        });
      }
    }
    const connect = await run(s.fast, async (hw, sid) => {
      const res = await connectJson(
        s.fast.url,
        JSON.stringify({ hardwareId: hw, sessionId: sid, phase: "REQUEST_PHASE_COMMIT" }),
        { "connect-timeout-ms": "9999999999" },
      );
      const text = res.frames.map((f) => (f as { textChunk?: string }).textChunk ?? "").join("");
      return { text, code: res.code };
    });
    expect(connect).toEqual({ text: "One. Two. Three.", code: undefined });
  });

  it("undecodable bytes and invalid UTF-8 are INVALID_ARGUMENT with an error frame, on every pipeline", async () => {
    const garbage = Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    for (const server of [s.fast, s.slow]) {
      for (const body of [garbage, Buffer.from(invalidUtf8Request(newSession()))]) {
        const r = await grpcRaw(server.url, envelope(body));
        expect(r.status).toBe("3");
        expect(r.message).toMatch(/^request: not a valid streaming\.StreamRequest message/);
        expect(r.frames).toEqual([{ case: "errorMessage", value: r.message }]);
      }
    }
    // Connect (binary) and gRPC-Web over HTTP/1.1 take connect's pipeline with the interceptor.
    const connect = await fetch(`${s.fast.url}${SA}`, {
      method: "POST",
      headers: { "content-type": "application/connect+proto" },
      body: envelope(invalidUtf8Request(newSession())),
    });
    const parts = envelopes(Buffer.from(await connect.arrayBuffer()));
    const end = JSON.parse((parts.at(-1)?.data ?? Buffer.from("{}")).toString());
    expect(end.error.code).toBe("invalid_argument");
    expect(parts).toHaveLength(2);
    const web = await fetch(`${s.fast.url}${SA}`, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto" },
      body: envelope(garbage),
    });
    const webParts = envelopes(Buffer.from(await web.arrayBuffer()));
    const trailer = (webParts.at(-1)?.data ?? Buffer.alloc(0)).toString();
    expect(trailer).toMatch(/grpc-status: ?3/);
  });

  it("a missing or extra request message is INVALID_ARGUMENT, not UNIMPLEMENTED", async () => {
    const one = envelope(
      requestBytes({ hardwareId: newDevice(), sessionId: newSession(), phase: 1 }),
    );
    for (const server of [s.fast, s.slow]) {
      const missing = await grpcRaw(server.url, Buffer.alloc(0));
      expect([missing.status, missing.message]).toEqual([
        "3",
        "request: the streaming.StreamRequest message is missing; send exactly one per call",
      ]);
      const extra = await grpcRaw(server.url, Buffer.concat([one, one]));
      expect(extra.status).toBe("3");
      expect(extra.message).toContain("came more than once");
    }
  });

  it("unknown fields are dropped while decoding, on both gRPC pipelines (#6)", async () => {
    // 100k unknown varint fields (number 1000) around a valid COLLECT.
    const w = new BinaryWriter();
    for (let i = 0; i < 100_000; i++) w.tag(1000, 0).uint32(1);
    const junk = w.finish();
    const valid = requestBytes({ hardwareId: "unknown-fields", sessionId: newSession(), phase: 1 });
    const body = envelope(Buffer.concat([junk, valid]));
    for (const fast of [true, false]) {
      const kept: number[] = [];
      const server = await recordingServer(fast, (req) => kept.push(req.$unknown?.length ?? 0));
      try {
        const r = await grpcRaw(server.url, body);
        expect(r.status).toBe("0");
        expect(kept, fast ? "fast path" : "connect").toEqual([0]);
      } finally {
        await server.close();
      }
    }
  });

  it("envelope flags other than 0 and 1 are refused", async () => {
    const msg = requestBytes({
      hardwareId: newDevice(),
      sessionId: newSession(),
      phase: 1,
      chunkSeq: 1,
      chunkText: "a",
    });
    const r = await grpcRaw(s.fast.url, envelope(msg, 0x04));
    expect(r.status).toBe("3");
    expect(r.message).toContain("envelope flags must be 0 or 1; got 4");
  });

  it("an unknown grpc-encoding is UNIMPLEMENTED without echoing the whole value", async () => {
    const msg = requestBytes({ hardwareId: newDevice(), sessionId: newSession(), phase: 1 });
    const r = await grpcRaw(s.fast.url, envelope(msg, 1), { "grpc-encoding": "x".repeat(5000) });
    expect(r.status).toBe("12");
    expect(r.message.length).toBeLessThan(200);
  });

  it("an unknown gRPC method gets grpc-status 12, over gRPC and gRPC-Web", async () => {
    for (const server of [s.fast, s.slow]) {
      const r = await grpcRaw(
        server.url,
        envelope(new Uint8Array()),
        {},
        "/streaming.StreamingService/Nope",
      );
      expect(r.headers[":status"]).toBe(200);
      expect(r.status).toBe("12");
      expect(r.message).toContain("/streaming.StreamingService/Nope");
    }
    const web = await fetch(`${s.fast.url}/nope.Service/Method`, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto" },
      body: envelope(new Uint8Array()),
    });
    expect(web.status).toBe(200);
    expect(web.headers.get("grpc-status")).toBe("12");
    // The Connect protocol's answer for an unknown method stays 404.
    const connect = await fetch(`${s.fast.url}/nope.Service/Method`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(connect.status).toBe(404);
  });

  it("hardware ids wrapped in NBSP or BOM are refused, not trimmed into another device's id", async () => {
    for (const hw of ["\u00a0dev-1", "dev-1\u00a0", "\ufeffdev-1", "\u2003dev-1"]) {
      const r = await streamAudio(client, collect(hw, newSession(), 1, "x"));
      expect(r.code, JSON.stringify(hw)).toBe(3);
      expect(r.message).toContain("hardware_id");
    }
    // ASCII spaces are still trimmed, as docs/protocol.md §2 says.
    expect(
      (await streamAudio(client, collect(" dev-ascii-trim ", newSession(), 1, "x"))).code,
    ).toBeUndefined();
  });

  it("h2Request helper sanity: a normal COLLECT is OK", async () => {
    const r = await h2Request(
      s.fast.url,
      { ":path": SA, "content-type": "application/grpc", te: "trailers" },
      envelope(
        requestBytes({
          hardwareId: newDevice(),
          sessionId: newSession(),
          phase: 1,
          chunkText: "x",
        }),
      ),
    );
    expect(r.status).toBe("0");
    expect(r.frames).toEqual([{ case: "endMessage", value: "COLLECT_ACCEPTED" }]);
  });
});
