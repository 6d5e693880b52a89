/**
 * What the bridge needs from a runtime's WebSocket: the only surface a binding
 * (ws on Node, Bun.serve, Deno.upgradeWebSocket, a Durable Object) implements.
 */
export interface BridgeSocket {
  send(data: Uint8Array): void;
  close(code: number, reason: string): void;
  /** Bytes queued for sending and not yet written to the network. */
  bufferedAmount(): number;
  /** Stop delivering incoming messages until resumeReading (backpressure); optional. */
  pauseReading?(): void;
  resumeReading?(): void;
}

/** WebSocket close codes the bridge uses (RFC 6455 §7.4.1). */
export const CLOSE = {
  normal: 1000,
  goingAway: 1001,
  unsupportedData: 1003,
  invalidPayload: 1007,
  tooBig: 1009,
} as const;
