import type { ServerConfig } from "../core/env-config.js";
import type { Logger } from "../core/ports.js";
import type { PttCoreOptions } from "../core/ptt-core.js";

/** What instances sharing holds put in PttCoreOptions. */
export type SharedStore = Pick<PttCoreOptions, "store" | "replyBus" | "memory" | "journal">;

/**
 * PTT_STORE=redis://… on Node, Bun and Deno: holds, reply stops, conversation memory and reply
 * journals shared through Redis (the store's close() closes the connections). Anything else: undefined (the
 * core's memory store, or the runtime's own, like Deno KV). The client loads only when used.
 */
export async function sharedStoreFromConfig(
  config: ServerConfig,
  logger: Logger,
): Promise<SharedStore | undefined> {
  if (!config.redis) return undefined;
  const { openRedisBackend } = await import("./redis/redis-backend.js");
  const { store, replyBus, memory, journal } = await openRedisBackend(
    config.redis,
    logger,
    config.core.voice?.memory,
  );
  return { store, replyBus, memory, journal };
}
