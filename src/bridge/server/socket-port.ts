/**
 * What the bridge needs from a runtime's WebSocket: the only surface a binding
 * (ws on Node, Bun.serve, Deno.upgradeWebSocket, a Durable Object) implements.
 * Bindings translate; every decision about backpressure is BridgeConnection's.
 */
export interface BridgeSocket {
  /**
   * Queues one binary message. Return `false` when the runtime dropped it instead (Bun past its
   * backpressure limit): the connection then closes with 1013 so that the client reconnects and
   * resends, rather than go on with a reply missing a frame or a call missing its CallEnd.
   */
  // biome-ignore lint/suspicious/noConfusingVoidType: bindings that never drop return nothing
  send(data: Uint8Array): boolean | void;
  close(code: number, reason: string): void;
  /** Bytes queued for sending and not yet written to the network. */
  bufferedAmount(): number;
  /**
   * True when the binding calls `BridgeConnection.drained()` as its send buffer empties (ws's
   * write callbacks, Bun's `drain`). Without it, the connection polls `bufferedAmount()` while
   * calls wait for room (Deno's WebSocket has no drain event).
   */
  readonly drainSignal?: boolean;
  /**
   * Stop delivering incoming messages until resumeReading (backpressure); optional. Without it
   * the connection cannot slow its client down, and refuses new calls past its limits instead.
   */
  pauseReading?(): void;
  resumeReading?(): void;
}

/** WebSocket close codes the bridge uses (RFC 6455 §7.4.1, and 1013 of the IANA registry). */
export const CLOSE = {
  normal: 1000,
  goingAway: 1001,
  unsupportedData: 1003,
  invalidPayload: 1007,
  tooBig: 1009,
  /** "Try again later": the client sends but does not read; it may reconnect and resend. */
  tryAgainLater: 1013,
} as const;
