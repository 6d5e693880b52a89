import { configureTextEncoding } from "@bufbuild/protobuf/wire";

/**
 * protobuf-es decodes strings with a default TextDecoder, which drops a byte order mark at the
 * start of each string: a hardware_id of BOM + "dev-1" arrived as "dev-1", another device's
 * id. A protobuf string is its bytes; this keeps every character, BOM included, so identifier
 * validation sees what the client sent. Process-wide (protobuf-es has only a global setting)
 * and idempotent; createPttCore calls it.
 */
export function keepByteOrderMarks(): void {
  if (configured) return;
  configured = true;
  const encoder = new TextEncoder();
  const loose = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
  const strict = new TextDecoder("utf-8", { ignoreBOM: true, fatal: true });
  configureTextEncoding({
    encodeUtf8: (text) => encoder.encode(text) as Uint8Array<ArrayBuffer>,
    // Workers' types take only ArrayBuffer-backed views; protobuf-es never hands a shared one.
    decodeUtf8: (bytes, isStrict) =>
      (isStrict ? strict : loose).decode(bytes as Uint8Array<ArrayBuffer>),
    checkUtf8(text) {
      try {
        encodeURIComponent(text);
        return true;
      } catch {
        return false;
      }
    },
  });
}

let configured = false;
