import type { IncomingHttpHeaders } from "node:http2";
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  createContextValues,
  type HandlerContext,
} from "@connectrpc/connect";
import { FastHeaders } from "./fast-headers.js";

/**
 * What connect aborts a call's signal with when no reason is given (a client hang-up
 * without an error code, or the call's end): built once, not per call, because Node
 * captures a stack trace for every DOMException.
 */
export const ABORTED = new DOMException("This operation was aborted", "AbortError");

/**
 * A real HandlerContext for the gRPC fast path, cheap when unused: the AbortController,
 * the Headers objects and the context values are only built when the handler reads them,
 * and response headers and trailers are FastHeaders.
 * Its signal aborts like connect's (createHandlerContext): on the deadline from
 * grpc-timeout (DEADLINE_EXCEEDED), on the client's RST_STREAM or hang-up, on server
 * shutdown, and when the call is over.
 */
export class FastHandlerContext implements HandlerContext {
  readonly requestMethod = "POST";
  readonly protocolName = "grpc";
  private controller: AbortController | undefined;
  private abortReason: unknown;
  private isAborted = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private deadline: number | undefined;
  private onShutdown: (() => void) | undefined;
  private reqHeader: Headers | undefined;
  private resHeader: Headers | undefined;
  private resTrailer: Headers | undefined;
  private ctxValues: ContextValues | undefined;

  constructor(
    readonly method: DescMethod,
    private readonly nodeHeaders: IncomingHttpHeaders,
    private readonly shutdownSignal: AbortSignal,
    timeoutMs: number | undefined,
  ) {
    if (timeoutMs === undefined) return;
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
    if (this.isAborted) {
      controller.abort(this.abortReason);
    } else if (this.shutdownSignal.aborted) {
      this.abort(this.shutdownSignal.reason ?? ABORTED);
    } else {
      this.onShutdown = () => this.abort(this.shutdownSignal.reason ?? ABORTED);
      this.shutdownSignal.addEventListener("abort", this.onShutdown, { once: true });
    }
    return controller.signal;
  }

  readonly timeoutMs = (): number | undefined =>
    this.deadline === undefined ? undefined : this.deadline - Date.now();

  get requestHeader(): Headers {
    if (this.reqHeader) return this.reqHeader;
    // Like connect-node's nodeHeaderToWebHeader: every header but the pseudo-headers.
    const h = new Headers();
    for (const [name, value] of Object.entries(this.nodeHeaders)) {
      if (name.startsWith(":") || value === undefined) continue;
      if (Array.isArray(value)) for (const v of value) h.append(name, v);
      else h.append(name, String(value));
    }
    this.reqHeader = h;
    return h;
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
    const authority = this.nodeHeaders[":authority"] ?? this.nodeHeaders.host ?? "localhost";
    return new URL(this.nodeHeaders[":path"] ?? "/", `http://${authority}`).toString();
  }

  /** Response headers and trailers the handler set, without building them when it set none. */
  get headersSet(): Headers | undefined {
    return this.resHeader;
  }
  get trailersSet(): Headers | undefined {
    return this.resTrailer;
  }

  /** Aborts the signal (once: the first reason wins, as with connect's linked controller). */
  abort(reason: unknown): void {
    if (this.isAborted) return;
    this.isAborted = true;
    this.abortReason = reason;
    this.release();
    this.controller?.abort(reason);
  }

  /** The call is over: stop the deadline and, when someone holds the signal, abort it. */
  finish(): void {
    this.abort(ABORTED);
  }

  private expire(): void {
    this.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded));
  }

  private release(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.onShutdown) this.shutdownSignal.removeEventListener("abort", this.onShutdown);
    this.onShutdown = undefined;
  }
}
