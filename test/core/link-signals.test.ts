import { describe, expect, it } from "vitest";
import { linkSignals } from "../../src/core/abortable.js";

describe("linkSignals", () => {
  it("aborts with the first source's reason, once", () => {
    const a = new AbortController();
    const b = new AbortController();
    const { signal } = linkSignals(a.signal, b.signal);
    let fired = 0;
    signal.addEventListener("abort", () => fired++);
    expect(signal.aborted).toBe(false);
    b.abort("b first");
    a.abort("a later");
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toBe("b first");
    expect(fired).toBe(1);
  });

  it("is aborted at once when a source already is", () => {
    const a = new AbortController();
    a.abort("gone");
    const { signal } = linkSignals(a.signal, new AbortController().signal);
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toBe("gone");
  });

  it("unlink: later aborts of the sources no longer reach it", () => {
    const a = new AbortController();
    const b = new AbortController();
    const { signal, unlink } = linkSignals(a.signal, b.signal);
    unlink();
    a.abort();
    expect(signal.aborted).toBe(false);
  });
});
