import type { Clock, ReplyPart, Workflow } from "../ports.js";
import { splitSentences } from "./sentences.js";

export { splitSentences };

export interface EchoOptions {
  clock: Clock;
  /** Pause before each sentence after the first: makes replies long enough to interrupt. */
  delayMs?: number;
}

/**
 * The embedded default workflow: streams the committed text back as one
 * text_chunk per sentence. The chunks concatenate to exactly the committed text.
 */
export function createEchoWorkflow(options: EchoOptions): Workflow {
  const delayMs = options.delayMs ?? 0;
  return async function* echo(turn, signal): AsyncGenerator<ReplyPart> {
    let first = true;
    for (const sentence of splitSentences(turn.text)) {
      if (!first && delayMs > 0) await sleep(options.clock, delayMs, signal);
      signal.throwIfAborted();
      first = false;
      yield { kind: "text", text: sentence };
    }
  };
}

function sleep(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clock.clearTimer(timer);
      reject(signal.reason);
    };
    const timer = clock.setTimer(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
