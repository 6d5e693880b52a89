// The gRPC fast path (src/runtimes/node/grpc-fast-path.ts) against connect's own gRPC handler:
// the same service implementation behind two node:http2 servers, one with the fast path in
// front, one without. Every call is made with raw HTTP/2 frames and must come back the same
// byte for byte (status, headers, messages, trailers), and what the implementation saw of its
// context (signal reason, timeout, headers, url) must be the same too.
import { execFile } from "node:child_process";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { configFromEnv } from "../../src/core/env-config.js";
import { connectRouterOptions, undecodableRequest } from "../../src/core/request-decoding.js";
import {
  InterruptRequestSchema,
  RequestPhase,
  StreamingService,
  StreamRequestSchema,
  StreamResponseSchema,
} from "../../src/gen/streaming_pb.js";
import { FastHandlerContext } from "../../src/runtimes/node/fast-context.js";
import {
  createGrpcFastPath,
  installStreamHandler,
} from "../../src/runtimes/node/grpc-fast-path.js";
import { type NodeServer, startNodeServer } from "../../src/runtimes/node/server.js";
import { RUNTIME_COMMANDS } from "../support/spawn-runtime.js";

const READ_MAX = 1024;
const SA = "/streaming.StreamingService/StreamAudio";
const IR = "/streaming.StreamingService/InterruptSession";

/** What the implementation saw, per call id (the request's hardware_id). */
interface Seen {
  fast: boolean;
  timeout: boolean;
  header: string | null;
  url: string;
  reason?: { code: Code | undefined; message: string; name: string };
}

function testImpl(seen: Map<string, Seen>): Partial<ServiceImpl<typeof StreamingService>> {
  const record = (id: string, ctx: HandlerContext) => {
    seen.set(id, {
      fast: ctx instanceof FastHandlerContext,
      timeout: ctx.timeoutMs() !== undefined,
      header: ctx.requestHeader.get("x-test"),
      // The two servers listen on different ports.
      url: ctx.url.replace(/:\d+\//, ":PORT/"),
    });
  };
  const waitAborted = async (id: string, ctx: HandlerContext) => {
    await new Promise<void>((resolve) => {
      if (ctx.signal.aborted) resolve();
      ctx.signal.addEventListener("abort", () => resolve(), { once: true });
    });
    const r = ctx.signal.reason;
    const s = seen.get(id) as Seen;
    s.reason = {
      code: r instanceof ConnectError ? r.code : undefined,
      message: r instanceof Error ? r.message : String(r),
      name: r instanceof Error ? r.name : typeof r,
    };
    throw r;
  };
  return {
    async *streamAudio(req, ctx) {
      // A request that could not be decoded: fail it as core's StreamAudio does.
      const undecodable = undecodableRequest(req);
      if (undecodable) {
        yield { content: { case: "errorMessage", value: undecodable.rawMessage } };
        throw undecodable;
      }
      record(req.hardwareId, ctx);
      ctx.responseHeader.set("x-h", "header value");
      ctx.responseTrailer.set("x-t", "trailer value");
      switch (req.prompt) {
        case "two":
          yield { content: { case: "textChunk", value: "one" } };
          yield { content: { case: "endMessage", value: "two" } };
          return;
        case "big":
          yield { content: { case: "textChunk", value: "abc".repeat(2000) } };
          return;
        case "error":
          throw new ConnectError(
            "héllo wörld 100% \n dönë, 日本",
            Code.FailedPrecondition,
            { "x-meta": "m", "x-t": "from error" },
            [
              {
                desc: StreamResponseSchema,
                value: { content: { case: "errorMessage", value: "d" } },
              },
            ],
          );
        case "error-after-frame":
          yield { content: { case: "textChunk", value: "partial" } };
          throw new ConnectError("late", Code.Unavailable);
        case "plain-error":
          throw new Error("boom");
        case "wait":
          await waitAborted(req.hardwareId, ctx);
          return;
        default:
          yield { content: { case: "endMessage", value: "ok" } };
      }
    },
    interruptSession(req, ctx) {
      record(req.hardwareId, ctx);
      if (req.hardwareId === "unary-error") throw new ConnectError("no", Code.PermissionDenied);
      return { success: true, interruptedSessions: [req.hardwareId], message: "done" };
    },
    generateWelcomeAudio() {
      throw new ConnectError("GenerateWelcomeAudio is not implemented", Code.Unimplemented);
    },
  };
}

interface TestServer {
  url: string;
  seen: Map<string, Seen>;
  shutdown: AbortController;
  close(): Promise<void>;
}

async function serve(fast: boolean): Promise<TestServer> {
  const seen = new Map<string, Seen>();
  const impl = testImpl(seen);
  const shutdown = new AbortController();
  const server = http2.createServer(
    {},
    connectNodeAdapter({
      // Decoded as ptt-edge's own router decodes (request-decoding.ts), like the fast path.
      ...connectRouterOptions(READ_MAX, shutdown.signal),
      routes: (r) => r.service(StreamingService, impl),
    }),
  );
  if (fast) {
    const handle = createGrpcFastPath(StreamingService, impl, {
      readMaxBytes: READ_MAX,
      shutdownSignal: shutdown.signal,
    });
    expect(installStreamHandler(server, handle)).toBe(true);
  }
  const sessions = new Set<http2.Http2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    shutdown,
    close: () =>
      new Promise((resolve) => {
        for (const s of sessions) s.destroy();
        server.close(() => resolve());
      }),
  };
}

interface RawResult {
  status: number | undefined;
  headers: Record<string, unknown>;
  data: string;
  trailers: Record<string, unknown>;
  /** Set when the server reset the stream. */
  rstCode?: number;
}

interface RawCall {
  path?: string;
  headers?: http2.OutgoingHttpHeaders;
  body?: Uint8Array;
  /** Leave the request open (no END_STREAM) after the body. */
  keepOpen?: boolean;
  /** Reset the stream (CANCEL) this long after the request was sent. */
  cancelAfterMs?: number;
}

function frame(bytes: Uint8Array, flags = 0, length = bytes.byteLength): Uint8Array {
  const out = Buffer.alloc(5 + bytes.byteLength);
  out[0] = flags;
  out.writeUInt32BE(length, 1);
  out.set(bytes, 5);
  return out;
}

function streamRequest(hardwareId: string, prompt = ""): Uint8Array {
  return frame(
    toBinary(
      StreamRequestSchema,
      create(StreamRequestSchema, { hardwareId, prompt, phase: RequestPhase.COLLECT }),
    ),
  );
}

/** One call over raw HTTP/2; resolves with everything the client saw, minus `date`. */
function rawCall(url: string, call: RawCall): Promise<RawResult> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url);
    session.on("error", reject);
    const req = session.request({
      ":method": "POST",
      ":path": call.path ?? SA,
      "content-type": "application/grpc",
      te: "trailers",
      ...call.headers,
    });
    const result: RawResult = { status: undefined, headers: {}, data: "", trailers: {} };
    const chunks: Buffer[] = [];
    req.on("response", (h) => {
      const { date: _date, ":status": status, ...rest } = h;
      result.status = status;
      result.headers = rest;
    });
    req.on("trailers", (t) => {
      result.trailers = { ...t };
      // A request left open ends here: the answer came before the request did.
      if (call.keepOpen) req.close();
    });
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("error", () => {});
    req.on("close", () => {
      result.data = Buffer.concat(chunks).toString("hex");
      if (req.rstCode !== http2.constants.NGHTTP2_NO_ERROR) result.rstCode = req.rstCode;
      session.close();
      resolve(result);
    });
    if (call.body) req.write(call.body);
    if (!call.keepOpen) req.end();
    if (call.cancelAfterMs !== undefined) {
      setTimeout(() => req.close(http2.constants.NGHTTP2_CANCEL), call.cancelAfterMs);
    }
  });
}

describe("gRPC fast path vs connect's gRPC handler", () => {
  let fast: TestServer;
  let slow: TestServer;
  beforeAll(async () => {
    [fast, slow] = await Promise.all([serve(true), serve(false)]);
  });
  afterAll(async () => {
    await Promise.all([fast?.close(), slow?.close()]);
  });

  /** Runs the same call on both servers; returns the fast path's result and context. */
  async function same(id: string, call: RawCall) {
    const [a, b] = await Promise.all([rawCall(fast.url, call), rawCall(slow.url, call)]);
    expect(a).toEqual(b);
    const seenFast = fast.seen.get(id);
    const seenSlow = slow.seen.get(id);
    expect({ ...seenFast, fast: undefined }).toEqual({ ...seenSlow, fast: undefined });
    return { result: a, seen: seenFast };
  }

  const gzip = { "grpc-accept-encoding": "identity,deflate,gzip" };
  const cases: [string, (id: string) => RawCall][] = [
    ["one message", (id) => ({ body: streamRequest(id), headers: { "x-test": "a" } })],
    [
      "two messages, +proto",
      (id) => ({
        body: streamRequest(id, "two"),
        headers: { "content-type": "application/grpc+proto" },
      }),
    ],
    ["gzip accepted, small frame", (id) => ({ body: streamRequest(id, "two"), headers: gzip })],
    ["gzip accepted, 6 KB frame", (id) => ({ body: streamRequest(id, "big"), headers: gzip })],
    [
      "br first in accept list",
      (id) => ({ body: streamRequest(id, "big"), headers: { "grpc-accept-encoding": "br, gzip" } }),
    ],
    [
      "no compression accepted",
      (id) => ({ body: streamRequest(id, "big"), headers: { "grpc-accept-encoding": "identity" } }),
    ],
    [
      "error with unicode message, metadata and details",
      (id) => ({ body: streamRequest(id, "error") }),
    ],
    ["error after a frame", (id) => ({ body: streamRequest(id, "error-after-frame") })],
    ["a plain Error is INTERNAL", (id) => ({ body: streamRequest(id, "plain-error") })],
    [
      "deadline from grpc-timeout",
      (id) => ({ body: streamRequest(id, "wait"), headers: { "grpc-timeout": "30m" } }),
    ],
    [
      "grpc-timeout 0",
      (id) => ({ body: streamRequest(id, "wait"), headers: { "grpc-timeout": "0S" } }),
    ],
    [
      "unary",
      (id) => ({
        path: IR,
        body: frame(
          toBinary(InterruptRequestSchema, create(InterruptRequestSchema, { hardwareId: id })),
        ),
      }),
    ],
    [
      "unary error",
      () => ({
        path: IR,
        body: frame(
          toBinary(
            InterruptRequestSchema,
            create(InterruptRequestSchema, { hardwareId: "unary-error" }),
          ),
        ),
      }),
    ],
    [
      "unimplemented method (no implementation)",
      () => ({ path: "/streaming.StreamingService/ReportUsage", body: frame(new Uint8Array(0)) }),
    ],
    [
      "unimplemented (implementation throws)",
      () => ({
        path: "/streaming.StreamingService/GenerateWelcomeAudio",
        body: frame(new Uint8Array(0)),
      }),
    ],
    ["empty message", () => ({ body: frame(new Uint8Array(0)) })],
  ];
  for (const [name, make] of cases) {
    it(name, async () => {
      const id = `dev-${name.replace(/[^a-z0-9]/gi, "-")}`;
      const { seen } = await same(id, make(id));
      if (seen) expect(seen.fast).toBe(true);
    });
  }

  const refusals: [string, RawCall][] = [
    ["invalid grpc-timeout", { body: streamRequest("x"), headers: { "grpc-timeout": "soon" } }],
    ["message over readMaxBytes", { body: frame(new Uint8Array(READ_MAX + 1)) }],
    ["second message", { body: Buffer.concat([streamRequest("x"), streamRequest("y")]) }],
    ["no message", {}],
    ["incomplete envelope", { body: streamRequest("x").subarray(0, 8) }],
    ["prefix only", { body: frame(new Uint8Array(0), 0, 10) }],
    ["compressed flag without grpc-encoding", { body: frame(new Uint8Array([1, 2, 3]), 1) }],
    ["garbage protobuf", { body: frame(new Uint8Array([0xff, 0xff, 0xff])) }],
    ["unary without a message", { path: IR }],
  ];
  for (const [name, call] of refusals) {
    it(`refuses like connect: ${name}`, async () => {
      const { result } = await same("-", call);
      expect(result.trailers["grpc-status"]).not.toBe("0");
    });
  }

  it("falls through to connect: gzip request, JSON, Connect protocol, unknown path, GET", async () => {
    const calls: RawCall[] = [
      { body: streamRequest("fall-1"), headers: { "grpc-encoding": "gzip" } },
      {
        body: frame(Buffer.from('{"hardwareId":"fall-2"}')),
        headers: { "content-type": "application/grpc+json" },
      },
      {
        body: toBinary(StreamRequestSchema, create(StreamRequestSchema, { hardwareId: "fall-3" })),
        headers: { "content-type": "application/connect+proto" },
      },
      { path: "/streaming.StreamingService/Nope", body: streamRequest("fall-4") },
      { headers: { ":method": "GET" } },
    ];
    for (const call of calls) {
      const [a, b] = await Promise.all([rawCall(fast.url, call), rawCall(slow.url, call)]);
      expect(a).toEqual(b);
    }
    // The gzip-compressed request reached the implementation through connect, not the fast path.
    expect(fast.seen.get("fall-1")?.fast).toBe(false);
    expect(fast.seen.get("fall-2")?.fast).toBe(false);
  });

  it("refuses an over-size message from its 5-byte prefix, before the body arrives", async () => {
    const r = await rawCall(fast.url, {
      body: frame(new Uint8Array(0), 0, 6 * 1024 * 1024),
      keepOpen: true,
    });
    expect(r.trailers["grpc-status"]).toBe(String(Code.ResourceExhausted));
    expect(decodeURIComponent(r.trailers["grpc-message"] as string)).toBe(
      `message size ${6 * 1024 * 1024} is larger than configured readMaxBytes ${READ_MAX}`,
    );
  });

  it("RST_STREAM CANCEL aborts the handler's signal as connect does", async () => {
    const call = { body: streamRequest("cancelled", "wait"), cancelAfterMs: 30 };
    await Promise.all([rawCall(fast.url, call), rawCall(slow.url, call)]);
    await expect.poll(() => fast.seen.get("cancelled")?.reason?.code).toBe(Code.Canceled);
    await expect.poll(() => slow.seen.get("cancelled")?.reason?.code).toBe(Code.Canceled);
    expect(fast.seen.get("cancelled")?.reason).toEqual(slow.seen.get("cancelled")?.reason);
    expect(fast.seen.get("cancelled")?.reason?.code).toBe(Code.Canceled);
  });

  it("server shutdown aborts running calls", async () => {
    const calls = [fast, slow].map((s) =>
      rawCall(s.url, { body: streamRequest("shutdown", "wait") }),
    );
    await expect.poll(() => fast.seen.has("shutdown") && slow.seen.has("shutdown")).toBe(true);
    fast.shutdown.abort();
    slow.shutdown.abort();
    const [a, b] = await Promise.all(calls);
    expect(a).toEqual(b);
    expect(fast.seen.get("shutdown")?.reason).toEqual(slow.seen.get("shutdown")?.reason);
    expect(fast.seen.get("shutdown")?.reason?.name).toBe("AbortError");
  });
});

describe("ptt-edge's StreamAudio: COLLECT and CANCEL without the generator, byte for byte", () => {
  let fast: NodeServer;
  let slow: NodeServer;
  beforeAll(async () => {
    [fast, slow] = await Promise.all([
      startNodeServer({ port: 0, grpcFastPath: true }),
      startNodeServer({ port: 0, grpcFastPath: false }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([fast?.close(0), slow?.close(0)]);
  });

  function request(init: Parameters<typeof create<typeof StreamRequestSchema>>[1]): RawCall {
    return { body: frame(toBinary(StreamRequestSchema, create(StreamRequestSchema, init))) };
  }

  /** The same calls, in order, on each server (each its own store): what clients saw. */
  async function run(calls: RawCall[]) {
    const seen: RawResult[][] = [[], []];
    for (const call of calls) {
      const [a, b] = await Promise.all([rawCall(fast.url, call), rawCall(slow.url, call)]);
      seen[0]?.push(a);
      seen[1]?.push(b);
    }
    expect(seen[0]).toEqual(seen[1]);
    return seen[0] as RawResult[];
  }

  it("acks, duplicates, refusals, a cancel and a COLLECT after it", async () => {
    const hardwareId = `one-frame-${crypto.randomUUID()}`;
    const sessionId = crypto.randomUUID();
    const collect = (chunkSeq: number, chunkText: string) =>
      request({ hardwareId, sessionId, chunkSeq, chunkText, phase: RequestPhase.COLLECT });
    const results = await run([
      collect(1, "hello"),
      collect(1, "hello"),
      request({ hardwareId: "", sessionId, chunkSeq: 2, phase: RequestPhase.COLLECT }),
      collect(2, "x".repeat(100_000)),
      request({ hardwareId, sessionId, phase: RequestPhase.CANCEL }),
      collect(3, "late"),
      { body: frame(new Uint8Array([0xff, 0xff])) },
    ]);
    // What each call was: accepted, duplicate, then errors with their error_message frame.
    expect(results.map((r) => [r.trailers["grpc-status"], r.trailers["ptt-collect"]])).toEqual([
      ["0", "accepted"],
      ["0", "duplicate"],
      [String(Code.InvalidArgument), undefined],
      [String(Code.ResourceExhausted), undefined],
      ["0", undefined],
      [String(Code.FailedPrecondition), undefined],
      [String(Code.InvalidArgument), undefined],
    ]);
    for (const r of results) expect(r.data.length).toBeGreaterThan(10);
  });
});

describe("PTT_GRPC_FAST_PATH", () => {
  it("is on unless PTT_GRPC_FAST_PATH=0", () => {
    expect(configFromEnv({}).grpcFastPath).toBe(true);
    expect(configFromEnv({ PTT_GRPC_FAST_PATH: "1" }).grpcFastPath).toBe(true);
    expect(configFromEnv({ PTT_GRPC_FAST_PATH: "0" }).grpcFastPath).toBe(false);
  });

  it("is a known setting, and only 0 or 1", () => {
    expect(() => configFromEnv({ PTT_GRPC_FAST_PATH: "0" })).not.toThrow();
    expect(() => configFromEnv({ PTT_GRPC_FAST_PATH: "off" })).toThrow(/PTT_GRPC_FAST_PATH/);
  });
});

describe("Bun and Deno take the fast path through their node:http2", () => {
  for (const runtime of ["bun", "deno"] as const) {
    it(runtime, async () => {
      const [cmd, ...args] = RUNTIME_COMMANDS[runtime];
      // Their server script, swapped for the probe; the flags stay.
      const argv = [...args.slice(0, -1), "test/support/fast-path-probe.ts"];
      const out = await new Promise<string>((resolve, reject) => {
        execFile(
          cmd,
          argv,
          { env: { ...process.env, DENO_NO_UPDATE_CHECK: "1" }, timeout: 30_000 },
          (err, stdout, stderr) =>
            err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
        );
      });
      expect(JSON.parse(out)).toEqual({
        installed: true,
        fast: true,
        reply: "COLLECT_ACCEPTED",
        trailers: { "grpc-status": "0", "ptt-collect": "accepted" },
      });
    }, 60_000);
  }
});
