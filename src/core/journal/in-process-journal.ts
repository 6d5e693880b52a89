import { resourceExhausted } from "../errors.js";
import type { Clock, JournalEnd, JournalEntry, JournalHead, ReplyJournal } from "../ports.js";
import type { SessionKey } from "../session.js";

interface Journal {
  turnId: string;
  frames: Uint8Array[];
  bytes: number;
  end: JournalEnd | undefined;
  /** Readers following live, woken by every write. */
  wake: Set<() => void>;
  timer: unknown;
}

export interface InProcessJournalOptions {
  clock: Clock;
  /** Bytes all journals of this process may hold together (past it, appends are refused). */
  maxBytes: number;
}

/**
 * Reply journals in this process (the default; Node, Bun and Deno without a shared store):
 * each reply's encoded frames in an array, dropped by a timer `ttlMs` after the reply ends.
 * A resume must reach this same process.
 */
export function createInProcessJournal(options: InProcessJournalOptions): ReplyJournal & {
  readonly bytes: number;
} {
  const { clock, maxBytes } = options;
  const journals = new Map<string, Journal>();
  let total = 0;
  const id = (k: SessionKey) => `${k.hardwareId}\n${k.sessionId}`;
  const drop = (name: string) => {
    const j = journals.get(name);
    if (!j) return;
    journals.delete(name);
    total -= j.bytes;
    if (j.timer !== undefined) clock.clearTimer(j.timer);
    for (const w of j.wake) w();
  };
  const written = (j: Journal) => {
    for (const w of j.wake) w();
  };
  return {
    get bytes() {
      return total;
    },
    async open(key, turnId) {
      drop(id(key));
      journals.set(id(key), {
        turnId,
        frames: [],
        bytes: 0,
        end: undefined,
        wake: new Set(),
        timer: undefined,
      });
    },
    async append(key, index, bytes) {
      const j = journals.get(id(key));
      if (!j || j.end || index !== j.frames.length) return;
      if (total + bytes.length > maxBytes) {
        throw resourceExhausted(
          "max_buffered_bytes_per_instance",
          `reply journals hold ${total} bytes on this instance`,
        );
      }
      j.frames.push(bytes);
      j.bytes += bytes.length;
      total += bytes.length;
      written(j);
    },
    async end(key, end, ttlMs) {
      const name = id(key);
      const j = journals.get(name);
      if (!j || j.end) return;
      j.end = end;
      j.timer = clock.setTimer(() => drop(name), ttlMs);
      written(j);
    },
    async head(key): Promise<JournalHead | undefined> {
      const j = journals.get(id(key));
      return j && { turnId: j.turnId, frames: j.frames.length, end: j.end };
    },
    async *read(key, from, signal, idleMs): AsyncGenerator<JournalEntry> {
      const j = journals.get(id(key));
      if (!j) return;
      let next = from;
      for (;;) {
        while (next < j.frames.length) {
          yield { kind: "frame", index: next, bytes: j.frames[next] as Uint8Array };
          next++;
        }
        if (j.end) {
          yield { kind: "end", end: j.end };
          return;
        }
        if (signal.aborted || !journals.has(id(key))) return;
        const before = j.frames.length;
        await new Promise<void>((resolve) => {
          const done = () => {
            j.wake.delete(done);
            signal.removeEventListener("abort", done);
            clock.clearTimer(timer);
            resolve();
          };
          const timer = clock.setTimer(done, idleMs);
          j.wake.add(done);
          signal.addEventListener("abort", done, { once: true });
        });
        if (j.frames.length === before && !j.end) return;
      }
    },
    async close() {
      for (const name of [...journals.keys()]) drop(name);
    },
  };
}
