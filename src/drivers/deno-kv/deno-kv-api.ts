// The part of Deno KV the session driver (deno-kv-driver.ts) uses, declared here so nothing
// imports Deno's types or @deno/kv: `Deno.openKv()` on Deno and `openKv()` from @deno/kv on
// Node both satisfy it.
export type DenoKvKey = readonly (string | number | bigint | boolean | Uint8Array)[];
export interface DenoKvEntry {
  readonly key: DenoKvKey;
  readonly value: unknown;
  readonly versionstamp: string | null;
}
export interface DenoKvAtomic {
  check(...checks: { key: DenoKvKey; versionstamp: string | null }[]): DenoKvAtomic;
  set(key: DenoKvKey, value: unknown, options?: { expireIn?: number }): DenoKvAtomic;
  delete(key: DenoKvKey): DenoKvAtomic;
  sum(key: DenoKvKey, n: bigint): DenoKvAtomic;
  /** `versionstamp`: of every key the write set, when it landed. */
  commit(): Promise<{ ok: boolean; versionstamp?: string }>;
}
export interface DenoKv {
  get(key: DenoKvKey): Promise<DenoKvEntry>;
  /** `start`: from this key on (within `prefix`), as Deno's list selector. */
  list(selector: { prefix: DenoKvKey; start?: DenoKvKey }): AsyncIterable<DenoKvEntry>;
  atomic(): DenoKvAtomic;
}
