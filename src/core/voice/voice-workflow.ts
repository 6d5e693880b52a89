import { Code, ConnectError } from "@connectrpc/connect";
import type { ConversationMemory, Logger, ReplyContext, ReplyPart, Workflow } from "../ports.js";
import type { CommittedTurn } from "../session.js";
import { joinAudio } from "./audio-file.js";
import type { ChatContentPart, ChatMessage, ChatModel, SpeechSynth, Transcriber } from "./ports.js";
import { groupSentences } from "./sentence-grouper.js";

export interface VoiceWorkflowOptions {
  chat: ChatModel;
  /** Speech on: each text piece is followed by its audio. */
  speech?: SpeechSynth | undefined;
  /** Audio holds are transcribed with it; without one they fail FAILED_PRECONDITION. */
  transcriber?: Transcriber | undefined;
  memory: ConversationMemory;
  /** 0: memory off (nothing recalled or remembered). */
  memoryTurns: number;
  systemPrompt: string;
  logger: Logger;
}

/** Characters of a transcript echoed in the `ptt-transcript` header (headers stay small). */
const MAX_TRANSCRIPT_HEADER = 1000;

/** Sentences whose speech may be requested ahead of the one playing. */
const SPEECH_AHEAD = 2;

/**
 * The voice reply: the committed text (or the transcript of an audio hold) after the system
 * prompt and the device's remembered turns goes to the chat model; its tokens go out grouped in
 * sentences, each followed by its speech when speech is on. Every upstream request carries
 * `signal`, and whatever still runs when the reply ends is aborted. The device remembers the
 * turn as far as it was delivered (ReplyContext.delivered), never what nobody heard.
 */
export function createVoiceWorkflow(options: VoiceWorkflowOptions): Workflow {
  const { chat, speech, memory, logger } = options;
  return async function* voice(turn, replySignal, reply): AsyncGenerator<ReplyPart> {
    // Everything this reply starts stops with it, however it ends (the consumer may just stop).
    const stop = new AbortController();
    const onAbort = () => stop.abort(replySignal.reason);
    if (replySignal.aborted) onAbort();
    else replySignal.addEventListener("abort", onAbort, { once: true });
    const signal = stop.signal;
    try {
      const history = options.memoryTurns > 0 ? await memory.recall(turn.hardwareId, signal) : [];
      signal.throwIfAborted();
      const userText = await userTextOf(turn, options.transcriber, signal);
      if (userText !== turn.text) {
        // The client shows what was heard (percent-encoded UTF-8: headers are ASCII).
        reply?.header(
          "ptt-transcript",
          encodeURIComponent(userText.slice(0, MAX_TRANSCRIPT_HEADER)),
        );
      }
      logger.debug("voice turn", { turnId: turn.turnId, user: userText });
      if (options.memoryTurns > 0 && reply) remember(memory, turn.hardwareId, userText, reply);
      const messages: ChatMessage[] = [{ role: "system", content: options.systemPrompt }];
      for (const t of history) {
        messages.push({ role: "user", content: t.user });
        messages.push({ role: "assistant", content: t.assistant });
      }
      messages.push({ role: "user", content: userContent(userText, turn) });
      const pieces = groupSentences(chat.stream(messages, signal));
      if (!speech) {
        for await (const text of pieces) yield { kind: "text", text };
        return;
      }
      yield* spoken(pieces, speech, signal);
    } finally {
      replySignal.removeEventListener("abort", onAbort);
      stop.abort(replySignal.aborted ? replySignal.reason : undefined);
    }
  };
}

/** The turn is remembered when the reply ends, with only the text the client was sent. */
function remember(
  memory: ConversationMemory,
  hardwareId: string,
  user: string,
  reply: ReplyContext,
): void {
  reply.onEnd(async () => {
    const assistant = reply.delivered();
    // Nothing heard: the model is not told it answered (the user will likely ask again).
    if (assistant.trim().length === 0) return;
    await memory.remember(hardwareId, { user, assistant });
  });
}

async function userTextOf(
  turn: CommittedTurn,
  transcriber: Transcriber | undefined,
  signal: AbortSignal,
): Promise<string> {
  if (turn.text.trim().length > 0 || turn.audio.length === 0) return turn.text;
  const file = joinAudio(turn.audio);
  if (!transcriber) {
    throw new ConnectError(
      "chunk_audio: this server does not transcribe audio (PTT_STT_MODEL is not set); send the text",
      Code.FailedPrecondition,
    );
  }
  const text = await transcriber.transcribe(file, signal);
  if (text.trim().length === 0) {
    throw new ConnectError(
      "chunk_audio: no speech was recognised in the hold",
      Code.InvalidArgument,
    );
  }
  return text;
}

/** The user message: the text, and the screenshot as an image part when there is one. */
function userContent(text: string, turn: CommittedTurn): string | ChatContentPart[] {
  const shot = turn.screenshot?.data;
  if (!shot) return text;
  const url = shot.startsWith("data:") ? shot : `data:${imageType(shot)};base64,${shot}`;
  return [
    { type: "text", text },
    { type: "image_url", image_url: { url } },
  ];
}

/** The image type from base64's first characters (the magic numbers of each format). */
function imageType(base64: string): string {
  if (base64.startsWith("/9j/")) return "image/jpeg";
  if (base64.startsWith("R0lGOD")) return "image/gif";
  if (base64.startsWith("UklGR")) return "image/webp";
  return "image/png";
}

interface Sentence {
  text: string;
  audio?: AsyncIterable<Uint8Array> | undefined;
}

/**
 * Text pieces each followed by its speech, in order. The model's stream is read on its own
 * (so it never waits on audio), and the speech of the next SPEECH_AHEAD sentences is requested
 * while the current one streams; its chunks go out as they arrive.
 */
async function* spoken(
  pieces: AsyncIterable<string>,
  speech: SpeechSynth,
  signal: AbortSignal,
): AsyncGenerator<ReplyPart> {
  const queue: Sentence[] = [];
  let ended = false;
  let failure: { error: unknown } | undefined;
  let wake: (() => void) | undefined;
  const notify = () => {
    wake?.();
    wake = undefined;
  };
  const startAhead = () => {
    for (const s of queue.slice(0, SPEECH_AHEAD)) {
      if (!s.audio && s.text.trim().length > 0) s.audio = speech.speak(s.text, signal);
    }
  };
  void (async () => {
    for await (const text of pieces) {
      queue.push({ text });
      startAhead();
      notify();
    }
  })().then(
    () => {
      ended = true;
      notify();
    },
    (error: unknown) => {
      failure = { error };
      notify();
    },
  );
  // No cleanup of its own: the caller aborts `signal` on the way out, which ends the reading
  // task's model request and every speech request started ahead.
  for (;;) {
    while (queue.length === 0 && !ended && !failure) {
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
    const next = queue.shift();
    if (!next) {
      if (failure) throw failure.error;
      return;
    }
    startAhead();
    yield { kind: "text", text: next.text };
    if (!next.audio && next.text.trim().length > 0) next.audio = speech.speak(next.text, signal);
    if (!next.audio) continue;
    for await (const data of next.audio) {
      yield { kind: "audio", data, dtype: "int16", sampleRate: speech.sampleRate, channels: 1 };
    }
  }
}
