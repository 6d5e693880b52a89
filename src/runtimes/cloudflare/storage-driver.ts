import {
  createMemoryDriver,
  type JournalEntry,
  type RecordJournal,
} from "../../core/drivers/memory.js";
import type { OpenSession, SessionRecord } from "../../core/session.js";
import type { StoreDriver } from "../../core/store-driver.js";

/** Session records live under "s:<hardware id>\n<session id>" in the object's KV. */
const PREFIX = "s:";

/**
 * The store driver of a device object: its synchronous SQLite KV, one value per session
 * (the record and its due time), written in the step that changes it; a write the storage
 * refuses changes nothing and answers UNAVAILABLE. An object is the only writer of its
 * storage, so the memory driver serves reads from what it loaded and wrote (a read per
 * step would deserialize a whole hold, audio and all, for every COLLECT); a new instance
 * of the object (eviction, restart) loads it again.
 */
export function createStorageDriver(kv: SyncKvStorage, maxTombstones?: number): StoreDriver {
  return createMemoryDriver({ journal: kvJournal(kv), maxTombstones });
}

function kvJournal(kv: SyncKvStorage): RecordJournal {
  return {
    load: () =>
      [...kv.list<JournalEntry | SessionRecord>({ prefix: PREFIX })].map(
        ([k, stored]) => [k.slice(PREFIX.length), entryOf(stored)] as const,
      ),
    put: (k, entry) => {
      if (entry.record.state === "open") ownAudioBuffers(entry.record);
      kv.put(`${PREFIX}${k}`, entry);
    },
    delete: (k) => void kv.delete(`${PREFIX}${k}`),
  };
}

/** Records stored before entries had a due time are due now: the engine's sweep rewrites them. */
function entryOf(stored: JournalEntry | SessionRecord): JournalEntry {
  return "state" in stored ? { record: stored, dueAt: 0 } : stored;
}

/**
 * Storage serializes a byte view together with its whole buffer, and a decoded
 * chunk's audio is a view into the entire request (screenshot and all): give each
 * stored piece a buffer of its own, once (the same bytes; the request can be freed).
 */
function ownAudioBuffers(session: OpenSession): void {
  for (const { audio } of session.audio) {
    const { data } = audio;
    if (data.byteOffset !== 0 || data.byteLength !== data.buffer.byteLength) {
      audio.data = data.slice();
    }
  }
}
