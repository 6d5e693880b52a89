import * as http from "node:http";
import type { AddressInfo } from "node:net";

/**
 * An OpenAI-compatible upstream on loopback for tests and the bench: a real node:http server
 * that answers with OpenAI's exact bytes (chat.completion.chunk server-sent events with the
 * role delta first, a finish_reason chunk and `data: [DONE]`; chunked PCM for /audio/speech;
 * JSON for /audio/transcriptions; OpenAI's error bodies with retry-after) and records every
 * request and whether, and when, the client disconnected before the answer ended.
 */

export interface RecordedRequest {
  path: string;
  headers: http.IncomingHttpHeaders;
  /** JSON bodies parsed; multipart ones as their fields and file. */
  json?: Record<string, unknown>;
  form?: {
    fields: Record<string, string>;
    file?: { name: string; type: string; data: Uint8Array };
  };
  receivedAt: number;
  /** When the first content token or PCM chunk was written (performance.now()): the TTFB. */
  firstByteAt?: number;
  /** When the client closed the connection before the answer ended (performance.now()). */
  disconnectedAt?: number;
  /** Resolves when the exchange is over: "completed", or "disconnected" by the client. */
  ended: Promise<"completed" | "disconnected">;
}

export interface UpstreamError {
  status: number;
  /** OpenAI's shape by default: {"error":{"message","type","param","code"}}. */
  body?: string;
  headers?: Record<string, string>;
}

export interface ChatScript {
  /** Content deltas, after the role delta. */
  tokens: string[];
  /** Pause before each token. */
  delayMs?: number;
  /** Send this many tokens, then nothing more until the client goes (a long reply). */
  stallAfter?: number;
  /** Time to first byte: the response headers wait this long. */
  ttfbMs?: number;
  error?: UpstreamError;
  /** Drop the connection after this many tokens, without finish_reason or [DONE]. */
  cutAfter?: number;
  finishReason?: string;
}

export interface SpeechScript {
  /** The PCM chunks to send for this input. */
  chunks: (input: string) => Uint8Array[];
  delayMs?: number;
  stallAfter?: number;
  ttfbMs?: number;
  error?: UpstreamError;
}

export interface TranscriptionScript {
  text: string;
  error?: UpstreamError;
  delayMs?: number;
}

type Scripted<T> = T | ((req: RecordedRequest) => T);

export interface FakeOpenAi {
  readonly url: string;
  /** The base URL clients use (…/v1). */
  readonly baseUrl: string;
  readonly requests: RecordedRequest[];
  chat: Scripted<ChatScript>;
  speech: Scripted<SpeechScript>;
  transcription: Scripted<TranscriptionScript>;
  /** The requests made to one path. */
  to(
    path: "/v1/chat/completions" | "/v1/audio/speech" | "/v1/audio/transcriptions",
  ): RecordedRequest[];
  close(): Promise<void>;
}

/** Deterministic PCM for an input: its UTF-8 bytes as samples, in chunks of `chunkBytes`. */
export function pcmFor(input: string, chunkBytes = 960): Uint8Array[] {
  const bytes = new TextEncoder().encode(input);
  const data = new Uint8Array(bytes.length * 2 * 10);
  for (let i = 0; i < data.length; i++) data[i] = bytes[i % bytes.length] ?? 0;
  const out: Uint8Array[] = [];
  for (let i = 0; i < data.length; i += chunkBytes) out.push(data.slice(i, i + chunkBytes));
  return out;
}

export function openAiError(
  status: number,
  message: string,
  extra?: Record<string, string>,
): UpstreamError {
  const type =
    status === 429 ? "requests" : status >= 500 ? "server_error" : "invalid_request_error";
  const code = status === 429 ? "rate_limit_exceeded" : status === 401 ? "invalid_api_key" : null;
  return {
    status,
    body: `${JSON.stringify({ error: { message, type, param: null, code } }, null, 4)}\n`,
    headers: extra,
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startFakeOpenAi(): Promise<FakeOpenAi> {
  const requests: RecordedRequest[] = [];
  const sockets = new Set<import("node:net").Socket>();
  let seq = 0;
  const fake: FakeOpenAi = {
    url: "",
    baseUrl: "",
    requests,
    chat: { tokens: ["Hello", "!"] },
    speech: { chunks: (input) => pcmFor(input) },
    transcription: { text: "what is the weather" },
    to: (path) => requests.filter((r) => r.path === path),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks);
    let endedResolve!: (v: "completed" | "disconnected") => void;
    const record: RecordedRequest = {
      path: new URL(req.url ?? "/", "http://x").pathname,
      headers: req.headers,
      receivedAt: performance.now(),
      ended: new Promise((r) => {
        endedResolve = r;
      }),
    };
    requests.push(record);
    let finished = false;
    res.once("close", () => {
      if (finished) return endedResolve("completed");
      record.disconnectedAt = performance.now();
      endedResolve("disconnected");
    });
    const gone = () => res.destroyed || record.disconnectedAt !== undefined;
    const end = (body?: string | Uint8Array) => {
      finished = true;
      res.end(body);
    };
    const sendError = (e: UpstreamError) => {
      res.writeHead(e.status, { "content-type": "application/json", ...e.headers });
      end(e.body ?? openAiError(e.status, "error").body);
    };
    const type = req.headers["content-type"] ?? "";
    try {
      if (type.startsWith("application/json")) {
        record.json = JSON.parse(raw.toString("utf8"));
      } else if (type.startsWith("multipart/form-data")) {
        const form = await new Request("http://x", {
          method: "POST",
          headers: { "content-type": type },
          body: raw,
        }).formData();
        const fields: Record<string, string> = {};
        let file: NonNullable<RecordedRequest["form"]>["file"];
        for (const [k, v] of form.entries()) {
          if (typeof v === "string") fields[k] = v;
          else file = { name: v.name, type: v.type, data: new Uint8Array(await v.arrayBuffer()) };
        }
        record.form = { fields, file };
      }
    } catch {
      return sendError(openAiError(400, "We could not parse the JSON body of your request."));
    }
    const pick = <T>(s: Scripted<T>): T =>
      typeof s === "function" ? (s as (r: RecordedRequest) => T)(record) : s;
    if (record.path === "/v1/chat/completions") {
      const script = pick(fake.chat);
      if (script.ttfbMs) await sleep(script.ttfbMs);
      if (script.error) return sendError(script.error);
      const id = `chatcmpl-${++seq}`;
      const created = Math.floor(Date.now() / 1000);
      const model = String(record.json?.model ?? "gpt-4o-mini");
      const chunk = (delta: Record<string, unknown>, finish: string | null) =>
        `data: ${JSON.stringify({
          id,
          object: "chat.completion.chunk",
          created,
          model,
          system_fingerprint: "fp_44709d6fcb",
          choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
        })}\n\n`;
      res.writeHead(200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
        "x-request-id": `req_${seq}`,
      });
      res.flushHeaders();
      res.write(chunk({ role: "assistant", content: "", refusal: null }, null));
      for (const [i, token] of script.tokens.entries()) {
        if (script.stallAfter !== undefined && i >= script.stallAfter) return; // until the client goes
        if (script.cutAfter !== undefined && i >= script.cutAfter) {
          // Let what was written reach the client first, as a dropped connection would.
          await sleep(20);
          res.socket?.destroy();
          return;
        }
        if (script.delayMs) await sleep(script.delayMs);
        if (gone()) return;
        record.firstByteAt ??= performance.now();
        res.write(chunk({ content: token }, null));
      }
      if (script.stallAfter !== undefined && script.tokens.length <= script.stallAfter) return;
      res.write(chunk({}, script.finishReason ?? "stop"));
      end("data: [DONE]\n\n");
      return;
    }
    if (record.path === "/v1/audio/speech") {
      const script = pick(fake.speech);
      if (script.ttfbMs) await sleep(script.ttfbMs);
      if (script.error) return sendError(script.error);
      res.writeHead(200, {
        "content-type": "application/octet-stream",
        "transfer-encoding": "chunked",
      });
      for (const [i, c] of script.chunks(String(record.json?.input ?? "")).entries()) {
        if (script.stallAfter !== undefined && i >= script.stallAfter) return;
        if (script.delayMs) await sleep(script.delayMs);
        if (gone()) return;
        record.firstByteAt ??= performance.now();
        res.write(c);
      }
      if (script.stallAfter !== undefined) return;
      end();
      return;
    }
    if (record.path === "/v1/audio/transcriptions") {
      const script = pick(fake.transcription);
      if (script.delayMs) await sleep(script.delayMs);
      if (script.error) return sendError(script.error);
      res.writeHead(200, { "content-type": "application/json" });
      end(JSON.stringify({ text: script.text }));
      return;
    }
    sendError(openAiError(404, `Invalid URL (POST ${record.path})`));
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const { port } = server.address() as AddressInfo;
  Object.assign(fake, { url: `http://127.0.0.1:${port}`, baseUrl: `http://127.0.0.1:${port}/v1` });
  return fake;
}
