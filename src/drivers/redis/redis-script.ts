import type { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import type { AnyRedisClient } from "./redis-reply-bus.js";

/**
 * A Lua script run by its SHA1 (EVALSHA: only the hash crosses the wire), sent whole with EVAL
 * when the server does not know it yet (NOSCRIPT: a new, restarted or flushed Redis), which
 * also caches it there for the next EVALSHA.
 */
export class RedisScript {
  readonly sha: string;

  constructor(
    readonly name: string,
    readonly source: string,
  ) {
    this.sha = createHash("sha1").update(source).digest("hex");
  }

  async run(client: AnyRedisClient, keys: string[], args: (string | Buffer)[]): Promise<unknown> {
    const options = { keys, arguments: args };
    try {
      return await client.evalSha(this.sha, options);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith("NOSCRIPT")) throw err;
      return client.eval(this.source, options);
    }
  }
}
