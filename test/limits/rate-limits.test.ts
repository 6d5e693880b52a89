import { Code, createClient, type Transport } from "@connectrpc/connect";
import { codeFromString } from "@connectrpc/connect/protocol-connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StreamingService } from "../../src/gen/streaming_pb.js";
import { type NodeServer, startNodeServer } from "../../src/runtimes/node/server.js";
import { RawBridge, responses, stream, textIn } from "../bridge/raw-bridge.js";
import {
  ChunkMode,
  collect,
  commit,
  newDevice,
  newSession,
  type Req,
  replyText,
  streamAudio,
} from "../contract/calls.js";
import { TEST_LIMITS } from "../contract/target.js";
import { ManualClock } from "../support/manual-clock.js";

// Per-device rate limits over every Node transport, with a clock that moves only when told:
// no refill happens between calls, however slow the machine.
const PER_SECOND = 4;
const PER_MINUTE = 2;
const DELTA = { chunkMode: ChunkMode.DELTA };

interface Outcome {
  code: Code | undefined;
  message: string;
  trailers: Headers;
  text: string;
}
type Run = (req: Req) => Promise<Outcome>;

let server: NodeServer;
const clock = new ManualClock();
beforeAll(async () => {
  server = await startNodeServer({
    port: 0,
    graceMs: 0,
    config: {
      clock,
      limits: { ...TEST_LIMITS, maxCollectsPerSecond: PER_SECOND, maxCommitsPerMinute: PER_MINUTE },
    },
  });
});
afterAll(() => server?.close(0));

function over(transport: Transport): Run {
  const client = createClient(StreamingService, transport);
  return async (req) => {
    const r = await streamAudio(client, req);
    return { code: r.code, message: r.message, trailers: r.trailers, text: replyText(r) };
  };
}

const transports: Record<string, () => Promise<Run>> = {
  grpc: async () => over(createGrpcTransport({ baseUrl: server.url })),
  "connect-h1": async () =>
    over(createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" })),
  "grpc-web": async () => over(createGrpcWebTransport({ baseUrl: server.url, httpVersion: "1.1" })),
  bridge: async () => {
    const raw = await RawBridge.open(`${server.url.replace("http", "ws")}/v1/bridge`);
    let id = 0;
    return async (req) => {
      const { log, end } = await raw.run(++id, stream(req));
      return {
        code: end.code === "" ? undefined : codeFromString(end.code),
        message: end.message,
        trailers: new Headers(end.metadata),
        text: textIn(responses(log)),
      };
    };
  },
};

for (const [name, open] of Object.entries(transports)) {
  describe(`rate limits over node/${name}`, () => {
    let run: Run;
    beforeAll(async () => {
      run = await open();
    });

    it("COLLECTs past max_collects_per_second: RESOURCE_EXHAUSTED with the wait; nothing lost; another device unaffected", async () => {
      const device = newDevice("collects");
      const session = newSession();
      for (let seq = 1; seq <= PER_SECOND; seq++) {
        expect(
          (await run(collect(device, session, seq, `c${seq} `, DELTA))).code,
          `seq ${seq}`,
        ).toBe(undefined);
      }
      const refused = await run(collect(device, session, PER_SECOND + 1, "late", DELTA));
      expect(refused.code).toBe(Code.ResourceExhausted);
      expect(refused.message).toBe(
        `max_collects_per_second: more than ${PER_SECOND} COLLECTs of this device in 1 s; retry in 250 ms`,
      );
      expect(refused.trailers.get("ptt-retry-after-ms")).toBe("250");
      // Another device has its own budget.
      const other = newDevice("collects-other");
      expect((await run(collect(other, newSession(), 1, "x"))).code).toBeUndefined();
      // After the hinted wait the refused chunk goes in, and nothing sent before was lost.
      clock.advance(250);
      expect(
        (await run(collect(device, session, PER_SECOND + 1, "late", DELTA))).code,
      ).toBeUndefined();
      const reply = await run(commit(device, session));
      expect(reply.code).toBeUndefined();
      expect(reply.text).toBe("c1 c2 c3 c4 late");
    });

    it("COMMITs past max_commits_per_minute: refused before the buffer is touched; it commits in full after the wait", async () => {
      clock.advance(60_000);
      const device = newDevice("commits");
      const sessions = [newSession(), newSession(), newSession()];
      for (const [i, s] of sessions.entries()) {
        expect((await run(collect(device, s, 1, `turn ${i}`))).code).toBeUndefined();
      }
      expect((await run(commit(device, sessions[0] as string))).code).toBeUndefined();
      // A repeat of a committed COMMIT is ALREADY_EXISTS and spends nothing: the next one runs.
      expect((await run(commit(device, sessions[0] as string))).code).toBe(Code.AlreadyExists);
      expect((await run(commit(device, sessions[1] as string))).code).toBeUndefined();
      const last = sessions[PER_MINUTE] as string;
      const refused = await run(commit(device, last));
      expect(refused.code).toBe(Code.ResourceExhausted);
      expect(refused.message).toBe(
        `max_commits_per_minute: more than ${PER_MINUTE} COMMITs of this device in 60 s; retry in 30000 ms`,
      );
      expect(refused.trailers.get("ptt-retry-after-ms")).toBe("30000");
      clock.advance(29_000);
      expect((await run(commit(device, last))).trailers.get("ptt-retry-after-ms")).toBe("1000");
      clock.advance(1000);
      const reply = await run(commit(device, last));
      expect(reply.code).toBeUndefined();
      expect(reply.text).toBe(`turn ${PER_MINUTE}`);
    });
  });
}
