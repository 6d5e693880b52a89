import type { RedisSettings } from "../../core/env-config.js";
import type { MemoryBounds } from "../../core/memory/turns.js";
import { DEFAULT_MEMORY_BOUNDS } from "../../core/memory/turns.js";
import type { ConversationMemory, Logger, ReplyBus, ReplyJournal } from "../../core/ports.js";
import type { StoreFactory } from "../../core/ptt-core.js";
import { createSessionStore } from "../../core/session-engine.js";
import { systemClock } from "../../core/system-clock.js";
import { openRedisConnections, redactedUrl } from "./redis-connection.js";
import { createRedisDriver } from "./redis-driver.js";
import { createRedisJournal } from "./redis-journal.js";
import { createRedisMemory } from "./redis-memory.js";
import { createRedisReplyBus } from "./redis-reply-bus.js";

/** What an instance needs to share holds through Redis: store, reply bus, memory, journals. */
export interface RedisBackend {
  /** Its close() closes the Redis connections too (the server closes the store last). */
  store: StoreFactory;
  replyBus: ReplyBus;
  memory: ConversationMemory;
  /** Reply journals: a reply produced here can be resumed on another instance. */
  journal: ReplyJournal;
  /** Closes both connections (the store's close() does it too). */
  close(): Promise<void>;
}

/** How long startup waits for Redis before it goes on without (/readyz says 503 meanwhile). */
const STARTUP_WAIT_MS = 5000;

/**
 * PTT_STORE=redis://…: the session engine over the Redis driver, and the reply bus on its own
 * pub/sub connection. A Redis that is not there yet does not stop the instance from starting:
 * calls answer UNAVAILABLE and /readyz 503 until it is, and the connections keep trying.
 */
export async function openRedisBackend(
  settings: RedisSettings,
  logger: Logger,
  memoryBounds: MemoryBounds = DEFAULT_MEMORY_BOUNDS,
): Promise<RedisBackend> {
  const conn = openRedisConnections({
    url: settings.url,
    commandTimeoutMs: settings.commandTimeoutMs,
    logger,
  });
  const replyBus = createRedisReplyBus({
    client: conn.client,
    subscriber: conn.subscriber,
    prefix: settings.prefix,
    logger,
  });
  try {
    await Promise.all([conn.ready(STARTUP_WAIT_MS), replyBus.subscribed]);
  } catch (err) {
    logger.warn("starting without Redis; calls answer UNAVAILABLE until it is reachable", {
      redis: redactedUrl(settings.url),
      error: err instanceof Error ? err.message : String(err),
    });
  }
  const driver = createRedisDriver({
    client: conn.client,
    prefix: settings.prefix,
    logger,
  });
  return {
    store: (deps) => {
      const store = createSessionStore({ ...deps, driver });
      return { ...store, close: () => store.close().then(() => conn.close()) };
    },
    replyBus,
    memory: createRedisMemory({
      client: conn.client,
      prefix: settings.prefix,
      bounds: memoryBounds,
      clock: systemClock,
    }),
    journal: createRedisJournal({ client: conn.client, prefix: settings.prefix }),
    close: () => conn.close(),
  };
}
