import { Code, ConnectError } from "@connectrpc/connect";
import type { Transcriber } from "./ports.js";
import { postUpstream, type UpstreamOptions } from "./upstream.js";
import type { Endpoint } from "./voice-config.js";

/** /audio/transcriptions (multipart: file, model, response_format json): the `text`. */
export function createOpenAiTranscriber(
  stt: Endpoint & { model: string },
  options: UpstreamOptions,
): Transcriber {
  return {
    async transcribe(audio, signal) {
      const form = new FormData();
      form.append(
        "file",
        new Blob([audio.data as Uint8Array<ArrayBuffer>], { type: audio.mimeType }),
        audio.filename,
      );
      form.append("model", stt.model);
      form.append("response_format", "json");
      // fetch sets the multipart content type (with its boundary) itself.
      const call = await postUpstream(options, "stt", stt, "/audio/transcriptions", form, signal);
      const body = await call.text();
      try {
        const text = (JSON.parse(body) as { text?: unknown }).text;
        if (typeof text === "string") return text;
      } catch {
        // below
      }
      options.logger.warn("upstream sent an unreadable transcript", { upstream: "stt" });
      throw new ConnectError("stt: unreadable upstream response", Code.Internal);
    },
  };
}
