import type { RedisClientType } from "@redis/client";
import type { Logger, ReplyBus, ReplyStop } from "../../core/ports.js";

// Any node-redis client: the modules and RESP version do not matter for PUBLISH / SUBSCRIBE.
// biome-ignore lint/suspicious/noExplicitAny: node-redis's client type is generic over its modules.
export type AnyRedisClient = RedisClientType<any, any, any, any, any>;

export interface RedisReplyBusOptions {
  /** Publishes stops and answers (the store's connection may be shared). */
  client: AnyRedisClient;
  /** Subscribes: a connection of its own, since a subscribed connection can do nothing else. */
  subscriber: AnyRedisClient;
  /** Channel prefix: `<prefix>:replies` carries stops, `<prefix>:replies:<instance>` answers. */
  prefix: string;
  /** Unique per process; a random id when absent. */
  instanceId?: string;
  /** How long InterruptSession waits for the other instances' answers. */
  answerTimeoutMs?: number;
  logger: Logger;
}

/** A stop on the wire; `ask` asks every instance to answer with the session ids it stopped. */
interface StopMessage {
  from: string;
  ask?: number;
  stop: ReplyStop;
}

interface AnswerMessage {
  ask: number;
  stopped: string[];
}

interface Waiting {
  /** Answers expected: PUBLISH's receiver count, unknown until it returns. */
  expected: number;
  received: number;
  stopped: string[];
  done: () => void;
}

/**
 * The reply bus over Redis pub/sub. A stop goes to one channel every instance subscribes to;
 * each instance stops its replies the moment the message arrives. InterruptSession also needs
 * to know what was stopped: its message carries an `ask`, every receiver answers on the
 * asker's own channel, and PUBLISH's receiver count says how many answers to wait for (the
 * asker's own subscription receives its message too and counts as one empty answer, so the
 * count is right whether or not that subscription is up). An instance that dies before it
 * answers is waited for `answerTimeoutMs`, no longer.
 */
export interface RedisReplyBus extends ReplyBus {
  /** Resolves once both channels are subscribed (node-redis subscribes again after reconnects). */
  readonly subscribed: Promise<void>;
}

export function createRedisReplyBus(options: RedisReplyBusOptions): RedisReplyBus {
  const { client, subscriber, prefix, logger } = options;
  const me = options.instanceId ?? crypto.randomUUID();
  const answerTimeoutMs = options.answerTimeoutMs ?? 500;
  const stops = `${prefix}:replies`;
  const answers = `${prefix}:replies:${me}`;
  const waiting = new Map<number, Waiting>();
  let asks = 0;
  let apply: (stop: ReplyStop) => string[] = () => [];

  function answered(ask: number, stopped: string[]): void {
    const w = waiting.get(ask);
    if (!w) return; // too late: the asker has answered its caller already
    w.received++;
    w.stopped.push(...stopped);
    if (w.received >= w.expected) w.done();
  }

  function onStop(raw: string): void {
    const msg = parse<StopMessage>(raw, logger);
    if (!msg || typeof msg.from !== "string" || !msg.stop) return;
    if (msg.from === me) {
      // Our own stop, already applied here when it was sent.
      if (msg.ask !== undefined) answered(msg.ask, []);
      return;
    }
    const stopped = apply(msg.stop);
    if (msg.ask === undefined) return;
    const answer: AnswerMessage = { ask: msg.ask, stopped };
    client.publish(`${prefix}:replies:${msg.from}`, JSON.stringify(answer)).catch((err) => {
      logger.warn("reply bus: answer not sent", { error: String(err) });
    });
  }

  function onAnswer(raw: string): void {
    const msg = parse<AnswerMessage>(raw, logger);
    if (msg && typeof msg.ask === "number" && Array.isArray(msg.stopped)) {
      answered(msg.ask, msg.stopped);
    }
  }

  // Queued until the subscriber connects: the instance starts even while Redis is away.
  const subscribed = Promise.all([
    subscriber.subscribe(stops, onStop),
    subscriber.subscribe(answers, onAnswer),
  ]).then(() => {});
  subscribed.catch((err: unknown) => {
    logger.warn("reply bus: not subscribed", { error: String(err) });
  });

  return {
    subscribed,
    async publish(stop: ReplyStop, wantAnswers: boolean): Promise<string[]> {
      if (!wantAnswers) {
        await client.publish(stops, JSON.stringify({ from: me, stop } satisfies StopMessage));
        return [];
      }
      const ask = ++asks;
      // Waiting before PUBLISH: answers travel on the subscriber connection and may arrive
      // before PUBLISH's own reply does.
      const w: Waiting = {
        expected: Number.POSITIVE_INFINITY,
        received: 0,
        stopped: [],
        done() {},
      };
      let timer: ReturnType<typeof setTimeout> | undefined;
      const finished = new Promise<void>((resolve) => {
        w.done = resolve;
      });
      waiting.set(ask, w);
      try {
        const message: StopMessage = { from: me, ask, stop };
        w.expected = Number(await client.publish(stops, JSON.stringify(message)));
        if (w.received < w.expected) {
          await Promise.race([
            finished,
            new Promise<void>((resolve) => {
              timer = setTimeout(resolve, answerTimeoutMs);
            }),
          ]);
        }
        return [...new Set(w.stopped)];
      } finally {
        clearTimeout(timer);
        waiting.delete(ask);
      }
    },

    listen(fn: (stop: ReplyStop) => string[]): void {
      apply = fn;
    },

    async close(): Promise<void> {
      for (const w of waiting.values()) w.done();
      // Only while connected: an UNSUBSCRIBE queued for a Redis that is away never returns.
      if (subscriber.isReady) await subscriber.unsubscribe([stops, answers]).catch(() => {});
    },
  };
}

function parse<T>(raw: string, logger: Logger): T | undefined {
  try {
    return JSON.parse(raw) as T;
  } catch {
    logger.warn("reply bus: a message that is not JSON was ignored", { bytes: raw.length });
    return undefined;
  }
}
