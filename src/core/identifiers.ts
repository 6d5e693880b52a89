import { invalidArgument } from "./errors.js";

const HARDWARE_ID = /^[A-Za-z0-9._:@-]{1,128}$/;
// Version-4 UUID: version nibble 4, variant 8/9/a/b.
const SESSION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

// ASCII whitespace only: String.prototype.trim also strips NBSP, BOM and other Unicode spaces,
// which turned "\u00a0dev-1" or "\ufeffdev-1" into another device's id "dev-1".
const ASCII_SPACE_AROUND = /^[ \t\r\n]+|[ \t\r\n]+$/g;

/** Returns the canonical hardware id (trimmed) or throws INVALID_ARGUMENT naming the rule. */
export function canonicalHardwareId(raw: string): string {
  const id = raw.replace(ASCII_SPACE_AROUND, "");
  if (id.length === 0) throw invalidArgument("hardware_id", "must not be empty");
  // Length first, so an over-long value is never echoed or regex-scanned.
  if (id.length > 128) throw invalidArgument("hardware_id", "must be at most 128 characters");
  if (!HARDWARE_ID.test(id)) {
    throw invalidArgument("hardware_id", "may only contain letters, digits and . _ : @ -");
  }
  if (id.toLowerCase() === "unknown") {
    throw invalidArgument("hardware_id", 'must identify the device; "unknown" is not allowed');
  }
  return id;
}

/** Returns the canonical (lower-case) session id or throws INVALID_ARGUMENT. */
export function canonicalSessionId(raw: string): string {
  if (raw.length !== 36 || !SESSION_ID.test(raw)) {
    throw invalidArgument("session_id", "must be a version-4 UUID (8-4-4-4-12 hex)");
  }
  return raw.toLowerCase();
}
