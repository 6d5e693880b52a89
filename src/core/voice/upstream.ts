import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "../ports.js";
import type { Endpoint } from "./voice-config.js";

/** Which upstream a request goes to: named in every error and log line. */
export type UpstreamName = "llm" | "tts" | "stt";

export interface UpstreamOptions {
  fetch: typeof fetch;
  /** Longest wait for the response, then between two body chunks. */
  timeoutMs: number;
  logger: Logger;
}

/** An upstream response whose body is read through `chunks()` (once). */
export interface UpstreamCall {
  response: Response;
  /** Body chunks; each wait is bounded by the timeout; leaving early aborts the request. */
  chunks(): AsyncGenerator<Uint8Array>;
  /** The whole body as text (through chunks(), so under the same timeout). */
  text(): Promise<string>;
}

/** An error body is read this far at most (a message fits; a hostile upstream cannot flood us). */
const MAX_ERROR_BODY = 16 * 1024;

class UpstreamTimeout extends Error {
  override name = "UpstreamTimeout";
}

/**
 * POSTs to an OpenAI-compatible upstream with the reply's signal, so an interrupt, CANCEL,
 * barge-in, hang-up or shutdown closes the upstream connection at once (the signal reaches
 * fetch itself; leaving a read loop is not enough on every runtime). Fails fast: no retries.
 * Errors are ConnectErrors with a short message for the client (never the key, never the
 * upstream's text) while the upstream's own message goes to the operator's log.
 */
export async function postUpstream(
  options: UpstreamOptions,
  what: UpstreamName,
  endpoint: Endpoint,
  path: string,
  body: BodyInit,
  signal: AbortSignal,
  contentType?: string,
): Promise<UpstreamCall> {
  signal.throwIfAborted();
  const controller = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const onAbort = () => {
    if (timer !== undefined) clearTimeout(timer);
    controller.abort(signal.reason);
  };
  signal.addEventListener("abort", onAbort, { once: true });
  const arm = () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(() => controller.abort(new UpstreamTimeout()), options.timeoutMs);
  };
  const settle = () => {
    if (timer !== undefined) clearTimeout(timer);
    signal.removeEventListener("abort", onAbort);
  };
  /** Every failure of this request, mapped once. */
  const fail = (err: unknown): never => {
    settle();
    controller.abort();
    if (signal.aborted) throw signal.reason;
    if (controller.signal.reason instanceof UpstreamTimeout || err instanceof UpstreamTimeout) {
      options.logger.warn("upstream timed out", { upstream: what, timeoutMs: options.timeoutMs });
      throw new ConnectError(
        `${what}: no answer from the upstream within ${options.timeoutMs} ms`,
        Code.DeadlineExceeded,
      );
    }
    if (err instanceof ConnectError) throw err;
    const reason = redact(err instanceof Error ? err.message : String(err), endpoint.apiKey);
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    options.logger.warn("upstream unreachable", { upstream: what, error: reason, cause });
    throw new ConnectError(`${what}: the upstream is unreachable`, Code.Unavailable);
  };
  const headers: Record<string, string> = {};
  if (contentType) headers["content-type"] = contentType;
  if (endpoint.apiKey) headers.authorization = `Bearer ${endpoint.apiKey}`;
  arm();
  let response: Response;
  try {
    response = await options.fetch(`${endpoint.baseUrl}${path}`, {
      method: "POST",
      headers,
      body,
      signal: controller.signal,
    });
  } catch (err) {
    return fail(err);
  }
  if (!response.ok) {
    let text = "";
    try {
      text = await boundedText(response, MAX_ERROR_BODY);
    } catch (err) {
      return fail(err);
    }
    return fail(upstreamStatusError(options.logger, what, response, text, endpoint.apiKey));
  }
  let used = false;
  const call: UpstreamCall = {
    response,
    async text() {
      const decoder = new TextDecoder();
      let out = "";
      for await (const chunk of call.chunks()) out += decoder.decode(chunk, { stream: true });
      return out + decoder.decode();
    },
    async *chunks() {
      if (used) throw new Error("the body of an upstream call is read once");
      used = true;
      const body = response.body;
      if (!body) {
        settle();
        return;
      }
      const reader = body.getReader();
      let finished = false;
      try {
        for (;;) {
          arm();
          let step: ReadableStreamReadResult<Uint8Array>;
          try {
            step = await reader.read();
          } catch (err) {
            return fail(err);
          }
          if (step.done) {
            finished = true;
            return;
          }
          if (step.value.byteLength > 0) yield step.value;
        }
      } finally {
        settle();
        if (!finished) {
          // Left early (stopped, failed, or the consumer went): close the connection now.
          controller.abort(signal.aborted ? signal.reason : undefined);
          reader.cancel().catch(() => {});
        }
      }
    },
  };
  return call;
}

/**
 * The status of an upstream error: 429 → RESOURCE_EXHAUSTED (with its retry hint in the
 * `ptt-retry-after-ms` trailer), 5xx → UNAVAILABLE, other 4xx → INTERNAL (our request or our
 * configuration is wrong: nothing the client can fix).
 */
export function upstreamStatusError(
  logger: Logger,
  what: UpstreamName,
  response: Response,
  body: string,
  apiKey?: string,
): ConnectError {
  const status = response.status;
  logger.warn("upstream failed", {
    upstream: what,
    status,
    message: redact(upstreamMessage(body), apiKey),
  });
  if (status === 429) {
    const ms = retryAfterMs(response.headers);
    const metadata = ms === undefined ? undefined : { "ptt-retry-after-ms": String(ms) };
    const hint = ms === undefined ? "" : `; retry in ${Math.ceil(ms / 1000)} s`;
    return new ConnectError(
      `${what}: the upstream is rate limited (HTTP 429)${hint}`,
      Code.ResourceExhausted,
      metadata,
    );
  }
  if (status >= 500) {
    return new ConnectError(`${what}: the upstream failed (HTTP ${status})`, Code.Unavailable);
  }
  return new ConnectError(
    `${what}: the upstream refused the request (HTTP ${status})`,
    Code.Internal,
  );
}

async function boundedText(response: Response, max: number): Promise<string> {
  const reader = response.body?.getReader();
  if (!reader) return "";
  const decoder = new TextDecoder();
  let out = "";
  let bytes = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    bytes += value.byteLength;
    out += decoder.decode(value, { stream: true });
    if (bytes >= max) {
      reader.cancel().catch(() => {});
      break;
    }
  }
  return out + decoder.decode();
}

/** OpenAI's `retry-after-ms`, else `retry-after` (seconds or an HTTP date). */
export function retryAfterMs(headers: Headers, now = Date.now()): number | undefined {
  const ms = headers.get("retry-after-ms");
  if (ms && /^\d+(\.\d+)?$/.test(ms.trim())) return Math.ceil(Number(ms));
  const after = headers.get("retry-after")?.trim();
  if (!after) return undefined;
  if (/^\d+(\.\d+)?$/.test(after)) return Math.ceil(Number(after) * 1000);
  const at = Date.parse(after);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** `{"error":{"message":...}}` (OpenAI, Ollama, vLLM) or the text, cut short. */
function upstreamMessage(body: string): string {
  try {
    const json = JSON.parse(body) as { error?: { message?: unknown } | string };
    const m = typeof json.error === "string" ? json.error : json.error?.message;
    if (typeof m === "string") return m.slice(0, 500);
  } catch {
    // not JSON: the text itself
  }
  return body.slice(0, 500);
}

/** Some upstreams echo a bad key in their error text: it never reaches a log line. */
export function redact(text: string, apiKey?: string): string {
  return apiKey ? text.split(apiKey).join("[redacted]") : text;
}
