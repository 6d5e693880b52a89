import type { ConversationMemory, Logger, Workflow } from "../ports.js";
import { createOpenAiChat } from "./openai-chat.js";
import { createOpenAiSpeech } from "./openai-speech.js";
import { createOpenAiTranscriber } from "./openai-transcription.js";
import type { ChatModel, Transcriber } from "./ports.js";
import type { UpstreamOptions } from "./upstream.js";
import type { VoiceSettings } from "./voice-config.js";
import { createVoiceWorkflow } from "./voice-workflow.js";

export interface VoiceDeps {
  fetch: typeof fetch;
  memory: ConversationMemory;
  logger: Logger;
  /** Replace the OpenAI-compatible chat or transcriber (Workers AI does). */
  chat?: ChatModel | undefined;
  transcriber?: Transcriber | undefined;
}

/** PTT_WORKFLOW=openai (and the shared half of workers-ai): the voice workflow's parts. */
export function createOpenAiWorkflow(settings: VoiceSettings, deps: VoiceDeps): Workflow {
  const upstream: UpstreamOptions = {
    fetch: deps.fetch,
    timeoutMs: settings.timeoutMs,
    logger: deps.logger,
  };
  const model = settings.llm.model;
  const chat =
    deps.chat ?? (model ? createOpenAiChat({ ...settings.llm, model }, upstream) : undefined);
  if (!chat) throw new Error("PTT_LLM_MODEL: required with PTT_WORKFLOW=openai");
  const sttModel = settings.stt?.model;
  return createVoiceWorkflow({
    chat,
    speech: settings.tts ? createOpenAiSpeech(settings.tts, upstream) : undefined,
    transcriber:
      deps.transcriber ??
      (settings.stt && sttModel
        ? createOpenAiTranscriber({ ...settings.stt, model: sttModel }, upstream)
        : undefined),
    memory: deps.memory,
    memoryTurns: settings.memory.maxTurns,
    systemPrompt: settings.llm.systemPrompt,
    logger: deps.logger,
  });
}
