import { createClient } from "@redis/client";
import type { Logger } from "../../core/ports.js";
import type { AnyRedisClient } from "./redis-reply-bus.js";

export interface RedisConnectionOptions {
  /** redis://[user:password@]host:port[/db] or rediss:// (TLS). */
  url: string;
  /** A command Redis has not answered by then fails (UNAVAILABLE), whatever the cause. */
  commandTimeoutMs: number;
  logger: Logger;
}

/** The two connections an instance keeps: commands, and pub/sub (which can do nothing else). */
export interface RedisConnections {
  client: AnyRedisClient;
  subscriber: AnyRedisClient;
  /** Resolves once both are connected (or rejects after `ms`; they keep trying). */
  ready(ms: number): Promise<void>;
  close(): Promise<void>;
}

/** Reconnect quickly at first, then every second at most, forever: the instance heals itself. */
function backoff(retries: number): number {
  return Math.min(50 * 2 ** retries, 1000);
}

/**
 * Opens both connections without waiting for them. While Redis is away, commands fail at once
 * (no offline queue: a call answers UNAVAILABLE instead of hanging) and a Redis that accepts
 * but does not answer fails them after `commandTimeoutMs`. The subscriber does queue: its
 * SUBSCRIBEs must go out as soon as it connects, and node-redis subscribes again after every
 * reconnect. Each connection logs when it is lost and when it is back, not every retry.
 */
export function openRedisConnections(options: RedisConnectionOptions): RedisConnections {
  const { url, logger } = options;
  const client = createClient({
    url,
    disableOfflineQueue: true,
    commandOptions: { timeout: options.commandTimeoutMs },
    socket: { connectTimeout: options.commandTimeoutMs, reconnectStrategy: backoff, noDelay: true },
  }) as AnyRedisClient;
  const subscriber = client.duplicate({ disableOfflineQueue: false }) as AnyRedisClient;
  for (const [name, c] of [
    ["commands", client],
    ["pub/sub", subscriber],
  ] as const) {
    let up = false;
    let warned = false;
    c.on("ready", () => {
      up = true;
      warned = false;
      logger.info("redis connected", { connection: name });
    });
    c.on("error", (err: unknown) => {
      if (!up && warned) return;
      logger.warn("redis connection lost", { connection: name, error: String(err) });
      up = false;
      warned = true;
    });
  }
  // connect() resolves on the first success and keeps retrying until then.
  const connected = Promise.all([client.connect(), subscriber.connect()]).then(() => {});
  connected.catch(() => {}); // reported through the error events; close() ends it
  return {
    client,
    subscriber,
    ready: (ms) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`Redis at ${redactedUrl(url)} not reachable after ${ms} ms`)),
          ms,
        );
        connected.then(
          () => {
            clearTimeout(timer);
            resolve();
          },
          (err) => {
            clearTimeout(timer);
            reject(err);
          },
        );
      }),
    async close() {
      for (const c of [subscriber, client]) {
        try {
          // Connected: let sent commands finish. Reconnecting: close() would wait for Redis.
          if (c.isReady) await c.close();
          else if (c.isOpen) c.destroy();
        } catch {
          if (c.isOpen) c.destroy();
        }
      }
    },
  };
}

/** The URL without its password, for messages and logs. */
export function redactedUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparsable redis URL)";
  }
}
