// node:http2 sends what a stream wrote only once the current turn of the event loop is over:
// the gRPC fast path lets that turn end after a call's first frame, so a reply whose next part
// is made without waiting on anything (echo, a local synthesiser) does not hold its first frame
// back until that part is made. The server runs in its own process (test/support/
// first-frame-server.ts), busy for 1.2 s between its two frames.
import { type ChildProcess, spawn } from "node:child_process";
import * as http2 from "node:http2";
import { resolve } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RequestPhase, StreamRequestSchema } from "../../src/gen/streaming_pb.js";

const ROOT = resolve(import.meta.dirname, "../..");
// Long enough that a starved test process (a loaded CI machine) still reads the two apart.
const BUSY_MS = 1200;
let server: ChildProcess;
let port = 0;

beforeAll(async () => {
  server = spawn(process.execPath, ["--import", "tsx", "test/support/first-frame-server.ts"], {
    cwd: ROOT,
    env: { ...process.env, BUSY_MS: String(BUSY_MS) },
    stdio: ["ignore", "pipe", "inherit"],
  });
  port = await new Promise<number>((resolvePort, reject) => {
    let out = "";
    server.stdout?.on("data", (d) => {
      out += d;
      const m = /LISTENING (\d+)/.exec(out);
      if (m) resolvePort(Number(m[1]));
    });
    server.once("exit", (code) => reject(new Error(`server exited with ${code}: ${out}`)));
  });
}, 60_000);

afterAll(() => {
  server?.kill();
});

describe("gRPC fast path: the first frame", () => {
  it("leaves before the reply's next part is made", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const message = toBinary(
        StreamRequestSchema,
        create(StreamRequestSchema, { phase: RequestPhase.COMMIT }),
      );
      const body = Buffer.alloc(5 + message.length);
      body.writeUInt32BE(message.length, 1);
      body.set(message, 5);
      const arrivals: { at: number; text: string }[] = [];
      await new Promise<void>((done, fail) => {
        const req = session.request({
          ":method": "POST",
          ":path": "/streaming.StreamingService/StreamAudio",
          "content-type": "application/grpc",
          te: "trailers",
        });
        req.on("data", (chunk: Buffer) => {
          arrivals.push({ at: performance.now(), text: chunk.toString("latin1") });
        });
        req.on("error", fail);
        req.on("close", () => done());
        req.end(body);
      });
      const first = arrivals.find((a) => a.text.includes("first"));
      const second = arrivals.find((a) => a.text.includes("second"));
      expect(first?.text).toContain("first");
      expect(second?.text).toContain("second");
      // Held back, both frames come in one write after the busy part (a gap near 0).
      expect(first?.text.includes("second")).toBe(false);
      expect((second?.at ?? 0) - (first?.at ?? 0)).toBeGreaterThan(BUSY_MS / 3);
    } finally {
      session.close();
    }
  }, 60_000);
});
