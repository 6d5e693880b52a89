import type { JournalEnd, JournalEntry, JournalHead, ReplyJournal } from "../../core/ports.js";
import type { SessionKey } from "../../core/session.js";
import type { AnyRedisClient } from "./redis-reply-bus.js";

export interface RedisJournalOptions {
  client: AnyRedisClient;
  /** Keys are `<prefix>:{<hardware id>}:reply:<session id>`: beside the device's sessions. */
  prefix: string;
  /** How long one blocking read of a live follower waits (below the command timeout). */
  blockMs?: number;
}

type StreamEntry = { id: string; message: Record<string, string> };

/** Entries per XRANGE of a backlog. */
const PAGE = 128;

/**
 * Reply journals in Redis (PTT_STORE=redis://…): one Stream per reply, so a reply running on
 * instance A is resumed on instance B. Entry ids are the journal's positions: `0-1` opens it
 * (t = turn id), frame i is `0-(i+2)` (f = the encoded frame, base64), the end is the entry
 * after the last frame (c = code, m = message). A reader XRANGEs from its cursor, then follows
 * live with XREAD BLOCK on a connection of its own. Every write renews the key's TTL.
 */
export function createRedisJournal(options: RedisJournalOptions): ReplyJournal {
  const { client } = options;
  const blockMs = options.blockMs ?? 500;
  const keyOf = (k: SessionKey) => `${options.prefix}:{${k.hardwareId}}:reply:${k.sessionId}`;
  const write = async (key: string, id: string, fields: Record<string, string>, ttlMs: number) => {
    await Promise.all([client.xAdd(key, id, fields), client.pExpire(key, Math.max(1, ttlMs))]);
  };
  return {
    async open(key, turnId, ttlMs) {
      const k = keyOf(key);
      await client.del(k);
      await write(k, "0-1", { t: turnId }, ttlMs);
    },
    async append(key, index, bytes, ttlMs) {
      await write(keyOf(key), `0-${index + 2}`, { f: base64(bytes) }, ttlMs);
    },
    async end(key, end, ttlMs) {
      const k = keyOf(key);
      const last = (await client.xRevRange(k, "+", "-", { COUNT: 1 })) as StreamEntry[];
      const at = last[0] ? seqOf(last[0].id) + 1 : 2;
      await write(k, `0-${at}`, { c: String(end.code), m: end.message }, ttlMs);
    },
    async head(key): Promise<JournalHead | undefined> {
      const k = keyOf(key);
      const [first, last] = (await Promise.all([
        client.xRange(k, "0-1", "0-1"),
        client.xRevRange(k, "+", "-", { COUNT: 1 }),
      ])) as [StreamEntry[], StreamEntry[]];
      const opened = first[0];
      const tail = last[0];
      if (!opened?.message.t || !tail) return undefined;
      const end = endOf(tail);
      const lastSeq = seqOf(tail.id);
      return { turnId: opened.message.t, frames: end ? lastSeq - 2 : lastSeq - 1, end };
    },
    async *read(key, from, signal, idleMs): AsyncGenerator<JournalEntry> {
      const k = keyOf(key);
      let cursor = `0-${from + 1}`;
      // The backlog in pages: the first frames go out while the rest is still being read.
      for (;;) {
        const page = (await client.xRange(k, `(${cursor}`, "+", { COUNT: PAGE })) as StreamEntry[];
        for (const e of page) {
          const out = entryOf(e);
          yield out;
          if (out.kind === "end") return;
          cursor = e.id;
        }
        if (page.length < PAGE) break;
      }
      // Live: a connection of its own, as XREAD BLOCK holds it until something arrives.
      const follower = client.duplicate({ commandOptions: { timeout: blockMs + 5000 } });
      const stop = () => {
        if (follower.isOpen) follower.destroy();
      };
      signal.addEventListener("abort", stop, { once: true });
      try {
        await follower.connect();
        let idleSince = Date.now();
        while (!signal.aborted && Date.now() - idleSince < idleMs) {
          const got = (await follower.xRead({ key: k, id: cursor }, { BLOCK: blockMs })) as
            | { name: string; messages: StreamEntry[] }[]
            | null;
          const messages = got?.[0]?.messages ?? [];
          if (messages.length === 0) {
            // A journal that expired or was never there: nothing will come.
            if ((await client.exists(k)) === 0) return;
            continue;
          }
          idleSince = Date.now();
          for (const e of messages) {
            const out = entryOf(e);
            yield out;
            if (out.kind === "end") return;
            cursor = e.id;
          }
        }
      } catch (err) {
        if (signal.aborted) return;
        throw err;
      } finally {
        signal.removeEventListener("abort", stop);
        stop();
      }
    },
    async close() {},
  };
}

function seqOf(id: string): number {
  return Number(id.slice(id.indexOf("-") + 1));
}

function endOf(e: StreamEntry): JournalEnd | undefined {
  const code = e.message.c;
  return code === undefined ? undefined : { code: Number(code), message: e.message.m ?? "" };
}

function entryOf(e: StreamEntry): JournalEntry {
  const end = endOf(e);
  if (end) return { kind: "end", end };
  return { kind: "frame", index: seqOf(e.id) - 2, bytes: fromBase64(e.message.f ?? "") };
}

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

function fromBase64(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, "base64"));
}
