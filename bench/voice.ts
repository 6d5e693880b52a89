// The voice workflow's own overhead on Node (PTT_WORKFLOW=openai): COMMIT sent -> first text frame
// and -> first audio frame, minus the loopback upstream's own time to first byte (the LLM's for
// text; the LLM's plus the speech server's for audio). What remains is ptt-edge's part: the
// requests it makes, the SSE parsing, the sentence grouping, the frames. See bench/README.md.
import type * as http2 from "node:http2";
import { fromBinary } from "@bufbuild/protobuf";
import { RequestPhase, StreamResponseSchema } from "../src/gen/streaming_pb.js";
import { type FakeOpenAi, startFakeOpenAi } from "../test/support/fake-openai.js";
import { collectReq, framed, h2session, STREAM_AUDIO } from "./clients.js";
import { percentile } from "./h2load.js";
import { startServer } from "./proc.js";

const TURNS = Number(process.env.BENCH_VOICE_TURNS ?? 300);
const WARMUP = 30;

export interface VoiceOverhead {
  turns: number;
  /** µs, p50 / p99 */
  text: { p50us: number; p99us: number };
  audio: { p50us: number; p99us: number };
  /** The raw figures the overhead is taken from (p50, µs). */
  firstTextP50us: number;
  firstAudioP50us: number;
  llmTtfbP50us: number;
  ttsTtfbP50us: number;
}

/** One COMMIT; the times (ms since sent) of its first text and first audio frame. */
function commitTimes(s: http2.ClientHttp2Session, body: Uint8Array): Promise<[number, number]> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let text = -1;
    let audio = -1;
    let buf = Buffer.alloc(0);
    const req = s.request({
      ":method": "POST",
      ":path": STREAM_AUDIO,
      "content-type": "application/grpc",
      te: "trailers",
    });
    req.on("data", (d: Buffer) => {
      const now = performance.now();
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 5) {
        const n = buf.readUInt32BE(1);
        if (buf.length < 5 + n) break;
        const res = fromBinary(StreamResponseSchema, buf.subarray(5, 5 + n));
        buf = buf.subarray(5 + n);
        if (res.content.case === "textChunk" && text < 0) text = now - t0;
        if (res.content.case === "audioChunk" && audio < 0) audio = now - t0;
        if (res.content.case === "errorMessage") reject(new Error(res.content.value));
      }
    });
    req.on("error", reject);
    req.on("close", () =>
      text < 0 || audio < 0
        ? reject(new Error("no text or no audio frame"))
        : resolve([text, audio]),
    );
    req.end(body);
  });
}

export async function measureVoice(): Promise<VoiceOverhead> {
  const fake: FakeOpenAi = await startFakeOpenAi();
  fake.chat = { tokens: ["Hello there. ", "How are you today?"] };
  const server = await startServer({
    name: "ptt-edge (openai workflow)",
    runtime: "node",
    script: "bench/servers/ptt-node.ts",
    env: {
      PTT_WORKFLOW: "openai",
      OPENAI_BASE_URL: fake.baseUrl,
      PTT_LLM_MODEL: "bench",
      PTT_TTS_MODEL: "bench-tts",
      PTT_MEMORY_TURNS: "0",
      PTT_MAX_COMMITS_PER_MINUTE: "1000000000",
      PTT_MAX_COLLECTS_PER_SECOND: "1000000000",
    },
  });
  const text: number[] = [];
  const audio: number[] = [];
  const firstText: number[] = [];
  const firstAudio: number[] = [];
  const llm: number[] = [];
  const tts: number[] = [];
  try {
    const s = await h2session(server.port);
    for (let i = 0; i < TURNS + WARMUP; i++) {
      const hw = `bench-voice-${i % 64}`;
      const sid = crypto.randomUUID();
      const ack = await commitTimesOrAck(s, framed(collectReq(hw, sid, "hello, how are you")));
      void ack;
      const before = fake.requests.length;
      const [t, a] = await commitTimes(
        s,
        framed({ hardwareId: hw, sessionId: sid, phase: RequestPhase.COMMIT }),
      );
      const made = fake.requests.slice(before);
      const chat = made.find((r) => r.path === "/v1/chat/completions");
      const speech = made.find((r) => r.path === "/v1/audio/speech");
      if (!chat?.firstByteAt || !speech?.firstByteAt) throw new Error("upstream not called");
      const llmTtfb = chat.firstByteAt - chat.receivedAt;
      const ttsTtfb = speech.firstByteAt - speech.receivedAt;
      if (i < WARMUP) continue;
      firstText.push(t * 1000);
      firstAudio.push(a * 1000);
      llm.push(llmTtfb * 1000);
      tts.push(ttsTtfb * 1000);
      text.push((t - llmTtfb) * 1000);
      audio.push((a - llmTtfb - ttsTtfb) * 1000);
    }
    s.close();
  } finally {
    await server.stop();
    await fake.close();
  }
  const p = (xs: number[], q: number) =>
    Math.round(
      percentile(
        [...xs].sort((x, y) => x - y),
        q,
      ),
    );
  return {
    turns: TURNS,
    text: { p50us: p(text, 0.5), p99us: p(text, 0.99) },
    audio: { p50us: p(audio, 0.5), p99us: p(audio, 0.99) },
    firstTextP50us: p(firstText, 0.5),
    firstAudioP50us: p(firstAudio, 0.5),
    llmTtfbP50us: p(llm, 0.5),
    ttsTtfbP50us: p(tts, 0.5),
  };
}

/** A COLLECT: resolves when its call closed. */
function commitTimesOrAck(s: http2.ClientHttp2Session, body: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = s.request({
      ":method": "POST",
      ":path": STREAM_AUDIO,
      "content-type": "application/grpc",
      te: "trailers",
    });
    req.on("data", () => {});
    req.on("error", reject);
    req.on("close", () => resolve());
    req.end(body);
  });
}

export function renderVoice(v: VoiceOverhead): string {
  return [
    `\n### Voice workflow overhead (Node, gRPC, loopback OpenAI-compatible upstream; ${v.turns} turns, µs)\n`,
    "| from COMMIT to | measured p50 | upstream TTFB p50 | ptt-edge's own p50 / p99 |",
    "|---|--:|--:|--:|",
    `| first text frame | ${v.firstTextP50us} | ${v.llmTtfbP50us} (LLM) | ${v.text.p50us} / ${v.text.p99us} |`,
    `| first audio frame | ${v.firstAudioP50us} | ${v.llmTtfbP50us + v.ttsTtfbP50us} (LLM + speech) | ${v.audio.p50us} / ${v.audio.p99us} |`,
    "",
  ].join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const v = await measureVoice();
  process.stdout.write(renderVoice(v));
}
