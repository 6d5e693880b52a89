import type { OpenSession, SessionRecord } from "../../core/session.js";
import type { RecordJournal } from "../../core/stores/memory-store.js";

/** Session records live under "s:<hardware id>\n<session id>" in the object's KV. */
const PREFIX = "s:";

/**
 * The memory store's write-through journal in a device object's synchronous SQLite
 * KV: one value per session, written in the same step that changes it. A write the
 * storage refuses throws, and the store then leaves the session as it was.
 */
export function createKvJournal(kv: SyncKvStorage): RecordJournal {
  return {
    load: () =>
      [...kv.list<SessionRecord>({ prefix: PREFIX })].map(
        ([k, r]) => [k.slice(PREFIX.length), r] as const,
      ),
    put: (k, record) => {
      if (record.state === "open") ownAudioBuffers(record);
      kv.put(`${PREFIX}${k}`, record);
    },
    delete: (k) => void kv.delete(`${PREFIX}${k}`),
  };
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
