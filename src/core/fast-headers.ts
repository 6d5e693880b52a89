// Header names are HTTP tokens; values may not hold NUL, CR or LF (the Fetch standard's rules).
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE = /[\0\r\n]/;
const EDGE_WHITESPACE = /^[\t\n\r ]+|[\t\n\r ]+$/g;

function headerName(name: string): string {
  if (!TOKEN.test(name)) throw new TypeError(`Invalid header name: "${name}"`);
  return name.toLowerCase();
}

function headerValue(value: string): string {
  const v = String(value).replace(EDGE_WHITESPACE, "");
  if (BAD_VALUE.test(v)) throw new TypeError(`Invalid header value for a header`);
  return v;
}

/**
 * A Headers object without the cost of undici's (a webidl-checked class over a sorted list):
 * a Map with the Fetch standard's rules for names, values, appends and set-cookie, iterating
 * in name order like it. Response headers and trailers of the gRPC fast path: most calls set
 * two trailers, and a Headers built for each was a measurable part of a call.
 */
// The iterator types as the lib in use names them (DOM and Workers' types differ).
type Entries = ReturnType<Headers["entries"]>;
type Names = ReturnType<Headers["keys"]>;

export class FastHeaders implements Headers {
  private readonly map = new Map<string, string>();
  private cookies: string[] | undefined;
  /** True while the map's insertion order is name order (names are mostly set in it). */
  private inOrder = true;
  private lastName = "";

  private put(n: string, v: string): void {
    if (this.inOrder && !this.map.has(n)) {
      if (n < this.lastName) this.inOrder = false;
      else this.lastName = n;
    }
    this.map.set(n, v);
  }

  append(name: string, value: string): void {
    const n = headerName(name);
    const v = headerValue(value);
    if (n === "set-cookie") {
      this.cookies ??= [];
      this.cookies.push(v);
      return;
    }
    const old = this.map.get(n);
    this.put(n, old === undefined ? v : `${old}, ${v}`);
  }

  set(name: string, value: string): void {
    const n = headerName(name);
    const v = headerValue(value);
    if (n === "set-cookie") this.cookies = [v];
    else this.put(n, v);
  }

  get(name: string): string | null {
    const n = headerName(name);
    if (n === "set-cookie") return this.cookies ? this.cookies.join(", ") : null;
    return this.map.get(n) ?? null;
  }

  has(name: string): boolean {
    const n = headerName(name);
    return n === "set-cookie" ? this.cookies !== undefined : this.map.has(n);
  }

  delete(name: string): void {
    const n = headerName(name);
    if (n === "set-cookie") this.cookies = undefined;
    else this.map.delete(n);
  }

  getSetCookie(): string[] {
    return this.cookies ? [...this.cookies] : [];
  }

  /** Workers' non-standard Headers method (its Headers type requires it). */
  getAll(name: string): string[] {
    const n = headerName(name);
    if (n === "set-cookie") return this.getSetCookie();
    const v = this.map.get(n);
    return v === undefined ? [] : [v];
  }

  forEach(
    callback: (value: string, key: string, parent: Headers) => void,
    thisArg?: unknown,
  ): void {
    // The common case (the ack's two trailers) without building and sorting a list.
    if (this.inOrder && this.cookies === undefined) {
      for (const [name, value] of this.map) {
        callback.call(thisArg, value, name, this as unknown as Headers);
      }
      return;
    }
    for (const [name, value] of this.list()) {
      callback.call(thisArg, value, name, this as unknown as Headers);
    }
  }

  entries(): Entries {
    return this.list()[Symbol.iterator]() as unknown as Entries;
  }

  keys(): Names {
    return this.list()
      .map(([name]) => name)
      [Symbol.iterator]() as unknown as Names;
  }

  values(): Names {
    return this.list()
      .map(([, value]) => value)
      [Symbol.iterator]() as unknown as Names;
  }

  [Symbol.iterator](): Entries {
    return this.entries();
  }

  /** Sorted by name, set-cookie once per cookie: the order a Headers object iterates in. */
  private list(): [string, string][] {
    const out: [string, string][] = [...this.map];
    for (const c of this.cookies ?? []) out.push(["set-cookie", c]);
    if (out.length > 1) out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    return out;
  }
}
