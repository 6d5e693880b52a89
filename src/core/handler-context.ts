import type { DescMethod, DescService } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  createContextValues,
  type HandlerContext,
} from "@connectrpc/connect";
import type { CallTransport } from "./call-transport.js";
import { FastHeaders } from "./fast-headers.js";

/**
 * What connect aborts a call's signal with when no reason is given (a client hang-up
 * without an error code, or the call's end): built once, not per call, because Node
 * captures a stack trace for every DOMException.
 */
export const ABORTED = new DOMException("This operation was aborted", "AbortError");

function noop() {}

/** The longest delay setTimeout takes (2^31-1 ms, ~24.8 days); longer ones fire after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export interface LazyHandlerContextInit {
  method: DescMethod;
  protocolName: string;
  /** Copied on first read, as connect copies it for every call. */
  requestHeader?: Headers;
  url?: string;
  /** Aborts the signal (server shutdown). */
  shutdownSignal?: AbortSignal;
  /** The deadline: the signal aborts with DEADLINE_EXCEEDED after this long. */
  timeoutMs?: number;
  /** The connection the call came on (reply slots per connection, stalled replies). */
  transport?: CallTransport;
}

/**
 * A real HandlerContext that costs little when a handler does not use all of it (a COLLECT
 * reads none of its signal): the AbortController, the Headers objects and the context values
 * are built on first read, response headers and trailers are FastHeaders, and a call that
 * ends aborts its signal with a reason made once. The signal aborts like connect's
 * (createHandlerContext): on the deadline, on shutdown, on abort(reason), first reason wins.
 * Transports read `aborted` and `headersSet` / `trailersSet` without building anything.
 */
export class LazyHandlerContext implements HandlerContext {
  readonly method: DescMethod;
  readonly protocolName: string;
  readonly requestMethod = "POST";
  readonly transport: CallTransport | undefined;
  private controller: AbortController | undefined;
  private reason: unknown;
  private isAborted = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private deadline: number | undefined;
  private onShutdown: (() => void) | undefined;
  private readonly shutdownSignal: AbortSignal | undefined;
  private readonly initHeader: Headers | undefined;
  private readonly initUrl: string;
  private reqHeader: Headers | undefined;
  private resHeader: Headers | undefined;
  private resTrailer: Headers | undefined;
  private ctxValues: ContextValues | undefined;
  /** onAbort's listeners: told the reason without building the signal. */
  private abortListeners: ((reason: unknown) => void)[] | undefined;

  constructor(init: LazyHandlerContextInit) {
    this.method = init.method;
    this.protocolName = init.protocolName;
    this.shutdownSignal = init.shutdownSignal;
    this.initHeader = init.requestHeader;
    this.initUrl = init.url ?? "";
    this.transport = init.transport;
    const { timeoutMs } = init;
    // A deadline past what a timer can hold is no deadline (setTimeout would fire at once).
    if (timeoutMs === undefined || timeoutMs > MAX_TIMER_MS) return;
    this.deadline = Date.now() + timeoutMs;
    if (timeoutMs <= 0) this.expire();
    else this.timer = setTimeout(() => this.expire(), timeoutMs);
  }

  get service(): DescService {
    return this.method.parent;
  }

  get signal(): AbortSignal {
    if (this.controller) return this.controller.signal;
    const controller = new AbortController();
    this.controller = controller;
    if (this.isAborted) controller.abort(this.reason);
    else this.watchShutdown();
    return controller.signal;
  }

  /**
   * Calls `listener` with the reason when the call aborts (as the signal would), without
   * building the signal: an AbortController and its EventTarget are a good part of what a
   * COMMIT costs before its first frame. When the call already aborted, `listener` runs now.
   * Returns the function that stops listening.
   */
  onAbort(listener: (reason: unknown) => void): () => void {
    if (!this.isAborted) this.watchShutdown();
    if (this.isAborted) {
      listener(this.reason);
      return noop;
    }
    this.abortListeners ??= [];
    this.abortListeners.push(listener);
    return () => {
      const at = this.abortListeners?.indexOf(listener) ?? -1;
      if (at >= 0) this.abortListeners?.splice(at, 1);
    };
  }

  /** One request header (what requestHeader.get answers), without building the Headers. */
  requestHeaderValue(name: string): string | null {
    return this.reqHeader ? this.reqHeader.get(name) : this.readRequestHeaderValue(name);
  }

  /** signal.aborted, without building the signal. */
  get aborted(): boolean {
    return this.isAborted || this.shutdownSignal?.aborted === true;
  }

  /** signal.reason, without building the signal. */
  get abortReason(): unknown {
    if (this.isAborted) return this.reason;
    return this.shutdownSignal?.aborted ? (this.shutdownSignal.reason ?? ABORTED) : undefined;
  }

  readonly timeoutMs = (): number | undefined =>
    this.deadline === undefined ? undefined : this.deadline - Date.now();

  get requestHeader(): Headers {
    this.reqHeader ??= this.readRequestHeader();
    return this.reqHeader;
  }

  get responseHeader(): Headers {
    this.resHeader ??= new FastHeaders();
    return this.resHeader;
  }

  get responseTrailer(): Headers {
    this.resTrailer ??= new FastHeaders();
    return this.resTrailer;
  }

  get values(): ContextValues {
    this.ctxValues ??= createContextValues();
    return this.ctxValues;
  }

  get url(): string {
    return this.readUrl();
  }

  /** Response headers and trailers the handler set, without building them when it set none. */
  get headersSet(): Headers | undefined {
    return this.resHeader;
  }
  get trailersSet(): Headers | undefined {
    return this.resTrailer;
  }

  /** Aborts the signal (once: the first reason wins, as with connect's linked controller). */
  abort(reason: unknown = ABORTED): void {
    if (this.isAborted) return;
    this.isAborted = true;
    this.reason = reason;
    this.release();
    this.controller?.abort(reason);
    const listeners = this.abortListeners;
    this.abortListeners = undefined;
    if (listeners) for (const listener of listeners) listener(reason);
  }

  /** The call is over: stop the deadline and, when someone holds the signal, abort it. */
  finish(): void {
    this.abort(ABORTED);
  }

  /** The request headers, on first read; a subclass may take them from its transport. */
  protected readRequestHeader(): Headers {
    return new Headers(this.initHeader);
  }

  /** One request header, on a read that did not build them all; a subclass may read it directly. */
  protected readRequestHeaderValue(name: string): string | null {
    return this.requestHeader.get(name);
  }

  protected readUrl(): string {
    return this.initUrl;
  }

  /** Aborts the call when the server shuts down (the listener is added once, on first need). */
  private watchShutdown(): void {
    const shutdown = this.shutdownSignal;
    if (!shutdown || this.onShutdown) return;
    if (shutdown.aborted) {
      this.abort(shutdown.reason ?? ABORTED);
      return;
    }
    this.onShutdown = () => this.abort(shutdown.reason ?? ABORTED);
    shutdown.addEventListener("abort", this.onShutdown, { once: true });
  }

  private expire(): void {
    this.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded));
  }

  private release(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.onShutdown) this.shutdownSignal?.removeEventListener("abort", this.onShutdown);
    this.onShutdown = undefined;
  }
}

/**
 * Calls `listener` with the reason when the call's signal aborts, now if it already has;
 * returns the function that stops listening. A LazyHandlerContext does it without building
 * its signal.
 */
export function onCallAbort(ctx: HandlerContext, listener: (reason: unknown) => void): () => void {
  if (ctx instanceof LazyHandlerContext) return ctx.onAbort(listener);
  const signal = ctx.signal;
  if (signal.aborted) {
    listener(signal.reason);
    return noop;
  }
  const onAbort = () => listener(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  return () => signal.removeEventListener("abort", onAbort);
}

/** ctx.signal.throwIfAborted(), without building a LazyHandlerContext's signal. */
export function throwIfCallAborted(ctx: HandlerContext): void {
  if (!(ctx instanceof LazyHandlerContext)) ctx.signal.throwIfAborted();
  else if (ctx.aborted) throw ctx.abortReason;
}
