import { concatBytes } from "../../core/bytes.js";
import { resourceExhausted } from "../../core/errors.js";
import type { JournalEnd, JournalEntry, JournalHead, ReplyJournal } from "../../core/ports.js";
import type { SessionKey } from "../../core/session.js";
import type { DenoKv, DenoKvAtomic, DenoKvKey } from "./deno-kv-api.js";
import { PART_BYTES } from "./deno-kv-records.js";

export interface DenoKvJournalOptions {
  kv: DenoKv;
  /** First parts of every key (default ["ptt"], the session store's). */
  prefix?: readonly string[];
  /** How often a live reader looks for new frames (default 50 ms). */
  pollMs?: number;
}

/** The head of a reply: turn id, frames written, the end once written. */
interface Head {
  t: string;
  n: number;
  end?: JournalEnd;
  /** Expires at (real time): Deno KV reclaims expired keys late, a read must not see them. */
  x: number;
}

/** Mutations per atomic write when the end renews a journal (Deno KV allows 1,000, 800 KiB). */
const BATCH = 10;
/** Parts of one frame at most: one atomic write (800 KiB) holds the frame and its head. */
const MAX_PARTS = 12;

/**
 * Reply journals in Deno KV (PTT_STORE=deno-kv): a reply produced by one process is resumed by
 * any process of the database, or by this one after a restart. Keys, under the device's:
 * `r,hw,sid,h` the head, `r,hw,sid,f,i,p` frame i in ≤ 60 KiB parts (values are at most
 * 64 KiB), the frame and the head in one atomic write. Every set has expireIn = the window;
 * the end writes the journal again with it, so the whole reply lives the window past its end.
 * Deno KV reclaims expired keys in its own time (the SQLite backend late): the head also holds
 * its expiry, and a journal past it is gone to every read.
 * A live reader polls the head (across processes nothing else tells it of a write).
 */
export function createDenoKvJournal(options: DenoKvJournalOptions): ReplyJournal {
  const { kv } = options;
  const P = options.prefix ?? ["ptt"];
  const pollMs = options.pollMs ?? 50;
  const base = (k: SessionKey): DenoKvKey => [...P, "r", k.hardwareId, k.sessionId];
  const headKey = (k: SessionKey): DenoKvKey => [...base(k), "h"];
  const framesOf = (k: SessionKey): DenoKvKey => [...base(k), "f"];
  const readHead = async (k: SessionKey) => {
    const head = (await kv.get(headKey(k))).value as Head | null;
    return head && head.x > Date.now() ? head : null;
  };
  const commit = async (op: DenoKvAtomic) => {
    const res = await op.commit();
    if (!res.ok) throw new Error("deno kv: a journal write did not land");
    return res.versionstamp ?? null;
  };
  // The heads of the replies this process writes, with their versionstamps: a frame is one
  // checked write, without reading the head first (a reply has one writer; the check keeps
  // it honest if another process opened the journal again). Halves the KV operations per frame.
  const writing = new Map<string, { head: Head; versionstamp: string | null }>();
  const id = (k: SessionKey) => `${k.hardwareId}\u0000${k.sessionId}`;
  const writerHead = async (k: SessionKey) => {
    const known = writing.get(id(k));
    if (known) return known;
    const e = await kv.get(headKey(k));
    const head = e.value as Head | null;
    return head && head.x > Date.now() ? { head, versionstamp: e.versionstamp } : undefined;
  };
  return {
    async open(key, turnId, ttlMs) {
      const op = kv.atomic();
      for await (const e of kv.list({ prefix: base(key) })) op.delete(e.key);
      const head: Head = { t: turnId, n: 0, x: Date.now() + ttlMs };
      const versionstamp = await commit(op.set(headKey(key), head, { expireIn: ttlMs }));
      writing.set(id(key), { head, versionstamp });
    },
    async append(key, index, bytes, ttlMs) {
      const w = await writerHead(key);
      if (!w || w.head.end || index !== w.head.n) return;
      const { head } = w;
      const parts = Math.max(1, Math.ceil(bytes.length / PART_BYTES));
      if (parts > MAX_PARTS) {
        throw resourceExhausted(
          "deno_kv_atomic_write",
          `reply frame ${index} is ${bytes.length} bytes, more than one Deno KV write holds`,
        );
      }
      const op = kv.atomic().check({ key: headKey(key), versionstamp: w.versionstamp });
      for (let p = 0; p < parts; p++) {
        const part = bytes.slice(p * PART_BYTES, (p + 1) * PART_BYTES);
        op.set([...framesOf(key), index, p], part, { expireIn: ttlMs });
      }
      const next: Head = { ...head, n: index + 1, x: Date.now() + ttlMs };
      try {
        const versionstamp = await commit(op.set(headKey(key), next, { expireIn: ttlMs }));
        writing.set(id(key), { head: next, versionstamp });
      } catch (err) {
        writing.delete(id(key));
        throw err;
      }
    },
    async end(key, end, ttlMs) {
      writing.delete(id(key));
      const head = await readHead(key);
      if (!head || head.end) return;
      // Frames were set with the window from their own write: renew them from the end.
      let op = kv.atomic();
      let ops = 0;
      for await (const e of kv.list({ prefix: framesOf(key) })) {
        op.set(e.key, e.value, { expireIn: ttlMs });
        if (++ops % BATCH === 0) {
          await commit(op);
          op = kv.atomic();
        }
      }
      await commit(
        op.set(headKey(key), { ...head, end, x: Date.now() + ttlMs }, { expireIn: ttlMs }),
      );
    },
    async head(key): Promise<JournalHead | undefined> {
      const head = await readHead(key);
      return head ? { turnId: head.t, frames: head.n, end: head.end } : undefined;
    },
    async *read(key, from, signal, idleMs): AsyncGenerator<JournalEntry> {
      const opened = await readHead(key);
      if (!opened) return;
      let next = from;
      let idleSince = Date.now();
      for (;;) {
        const head = await readHead(key);
        // Expired, or opened again by a new reply: this one is gone.
        if (!head || head.t !== opened.t) return;
        if (next < head.n) {
          let index = -1;
          let pieces: Uint8Array[] = [];
          const flush = function* () {
            if (index !== next) return;
            yield { kind: "frame" as const, index, bytes: concatBytes(pieces) };
            next++;
          };
          const start = [...framesOf(key), next];
          for await (const e of kv.list({ prefix: framesOf(key), start })) {
            const i = e.key[e.key.length - 2] as number;
            if (i >= head.n) break;
            if (i !== index) {
              yield* flush();
              // A frame that is not the next: the journal lost frames (expired); stop here.
              if (i !== next) return;
              index = i;
              pieces = [];
            }
            pieces.push(e.value as Uint8Array);
          }
          yield* flush();
          if (next < head.n) return;
          idleSince = Date.now();
        }
        if (head.end) {
          yield { kind: "end", end: head.end };
          return;
        }
        if (signal.aborted || Date.now() - idleSince >= idleMs) return;
        await sleep(pollMs, signal);
      }
    },
    async close() {},
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
