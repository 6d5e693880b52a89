import { resourceExhausted } from "../../core/errors.js";
import type { JournalEnd, JournalEntry, JournalHead, ReplyJournal } from "../../core/ports.js";
import type { SessionKey } from "../../core/session.js";
import type { AlarmClock } from "./alarm-clock.js";

/** A reply's head: "rh:<hardware id>\n<session id>". */
const HEAD = "rh:";
/** Its frames: "rf:<hardware id>\n<session id>\n<index, 10 digits>" (listed in order). */
const FRAME = "rf:";
/** Frames per storage list of a backlog: the first go out before the last are read. */
const PAGE = 128;

interface Head {
  turnId: string;
  frames: number;
  bytes: number;
  end?: JournalEnd;
  /** Dropped at this time: `ttlMs` past the last write. */
  expiresAt: number;
}

/**
 * Reply journals in a device object's storage (Workers): each frame is written as it is
 * appended, so a resume after the object was evicted or restarted replays from storage.
 * Journals expire `ttlMs` past their last write by the object's alarm (AlarmClock.wakeAt,
 * beside the store's timer); a journal whose writer died with an old instance never ends: a
 * resume of it gets what was written and is told so at once. Live readers are woken in memory (writer and reader are the
 * same object). `maxBytes` bounds what this object's journals hold together.
 */
export function createStorageJournal(
  kv: SyncKvStorage,
  clock: AlarmClock,
  maxBytes: number,
): ReplyJournal {
  const heads = new Map<string, Head>();
  const wake = new Map<string, Set<() => void>>();
  /** Journals opened in this life of the object: the others' writers died with an old one. */
  const writing = new Set<string>();
  let total = 0;
  for (const [k, head] of kv.list<Head>({ prefix: HEAD })) {
    heads.set(k.slice(HEAD.length), head);
    total += head.bytes;
  }
  const id = (k: SessionKey) => `${k.hardwareId}\n${k.sessionId}`;
  const frameKey = (name: string, index: number) =>
    `${FRAME}${name}\n${String(index).padStart(10, "0")}`;
  const written = (name: string) => {
    for (const w of wake.get(name) ?? []) w();
  };
  const save = (name: string, head: Head) => {
    heads.set(name, head);
    kv.put(`${HEAD}${name}`, head);
  };
  const drop = (name: string) => {
    const head = heads.get(name);
    if (!head) return;
    heads.delete(name);
    writing.delete(name);
    total -= head.bytes;
    kv.delete(`${HEAD}${name}`);
    for (const [k] of kv.list({ prefix: `${FRAME}${name}\n` })) kv.delete(k);
    written(name);
  };
  // The alarm at the earliest expiry; it re-arms for journals renewed since it was set.
  const schedule = () => {
    let at: number | undefined;
    for (const h of heads.values()) at = at === undefined ? h.expiresAt : Math.min(at, h.expiresAt);
    clock.wakeAt("journal", at, sweep);
  };
  const sweep = () => {
    const now = Date.now();
    for (const [name, head] of [...heads]) if (head.expiresAt <= now) drop(name);
    schedule();
  };
  schedule();
  return {
    async open(key, turnId, ttlMs) {
      const name = id(key);
      drop(name);
      writing.add(name);
      save(name, { turnId, frames: 0, bytes: 0, expiresAt: Date.now() + ttlMs });
      schedule();
    },
    async append(key, index, bytes, ttlMs) {
      const name = id(key);
      const head = heads.get(name);
      if (!head || head.end || index !== head.frames) return;
      if (total + bytes.length > maxBytes) {
        throw resourceExhausted(
          "max_buffered_bytes_per_instance",
          `reply journals hold ${total} bytes in this device's object`,
        );
      }
      // Storage keeps a view's whole buffer: give the frame its own.
      kv.put(frameKey(name, index), bytes.slice());
      save(name, {
        ...head,
        frames: index + 1,
        bytes: head.bytes + bytes.length,
        expiresAt: Date.now() + ttlMs,
      });
      total += bytes.length;
      written(name);
    },
    async end(key, end, ttlMs) {
      const name = id(key);
      const head = heads.get(name);
      if (!head || head.end) return;
      writing.delete(name);
      save(name, { ...head, end, expiresAt: Date.now() + ttlMs });
      schedule();
      written(name);
    },
    async head(key): Promise<JournalHead | undefined> {
      const head = heads.get(id(key));
      return head && { turnId: head.turnId, frames: head.frames, end: head.end };
    },
    async *read(key, from, signal, idleMs): AsyncGenerator<JournalEntry> {
      const name = id(key);
      const opened = heads.get(name);
      if (!opened) return;
      let next = from;
      for (;;) {
        // Read again after every page: the writer runs while this reader's frames are written
        // out, and may have appended or ended meanwhile.
        const head = heads.get(name);
        // Dropped (expired) or opened again by a new reply: this one is gone.
        if (!head || head.turnId !== opened.turnId) return;
        if (next < head.frames) {
          const page = kv.list<Uint8Array>({
            start: frameKey(name, next),
            prefix: `${FRAME}${name}\n`,
            limit: PAGE,
          });
          const from = next;
          for (const [, bytes] of page) {
            yield { kind: "frame", index: next, bytes: new Uint8Array(bytes) };
            next++;
          }
          // Frames the head counts but storage lacks: the journal was dropped meanwhile.
          if (next === from) return;
          continue;
        }
        if (head.end) {
          yield { kind: "end", end: head.end };
          return;
        }
        // No writer (it ran in an evicted instance): nothing will come; the caller says so.
        if (signal.aborted || !writing.has(name)) return;
        const before = head.frames;
        await new Promise<void>((resolve) => {
          const set = wake.get(name) ?? new Set();
          wake.set(name, set);
          const done = () => {
            set.delete(done);
            if (set.size === 0) wake.delete(name);
            signal.removeEventListener("abort", done);
            clearTimeout(timer);
            resolve();
          };
          const timer = setTimeout(done, idleMs);
          set.add(done);
          signal.addEventListener("abort", done, { once: true });
        });
        const now = heads.get(name);
        if (now && now.frames === before && !now.end) return;
      }
    },
    async close() {},
  };
}
