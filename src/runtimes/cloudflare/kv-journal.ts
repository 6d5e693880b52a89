import type { JournalEntry, RecordJournal } from "../../core/drivers/memory.js";
import type { OpenSession, SessionRecord } from "../../core/session.js";

/** Session records live under "s:<hardware id>\n<session id>" in the object's KV. */
const PREFIX = "s:";

/**
 * The memory driver's write-through journal in a device object's synchronous SQLite
 * KV: one value per session, written in the same step that changes it. A write the
 * storage refuses throws, and the driver then leaves the session as it was.
 */
export function createKvJournal(kv: SyncKvStorage): RecordJournal {
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
