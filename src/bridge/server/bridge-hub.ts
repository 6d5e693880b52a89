import { BridgeConnection, type BridgeHandlers } from "./bridge-connection.js";
import {
  bridgeRequestHeaders,
  offeredProtocols,
  refusedOrigin,
  selectProtocol,
} from "./handshake.js";
import type { BridgeSocket } from "./socket-port.js";

/** The path of the bridge on every runtime. */
export const BRIDGE_PATH = "/v1/bridge";

/** An upgrade to the bridge that passed the checks: what its socket is opened with. */
export interface BridgeUpgrade {
  /** The subprotocol to answer with (ours, when offered), or undefined. */
  readonly protocol: string | undefined;
  /** The headers calls on the socket authenticate with (docs/protocol.md §6). */
  readonly headers: Headers;
  readonly url: string;
}

/** An upgrade refused before any socket exists. */
export interface BridgeRefusal {
  readonly status: number;
  readonly reason: string;
  /** Headers the refusal must carry (426 names the version we speak). */
  readonly headers?: Readonly<Record<string, string>>;
}

/** RFC 6455 §4.2.2: the only version; older drafts (8 and below) are refused with 426. */
const WEBSOCKET_VERSION = "13";

/** The status line's reason phrase of each refusal status. */
export const REFUSAL_PHRASES: Readonly<Record<number, string>> = {
  403: "Forbidden",
  426: "Upgrade Required",
};

/**
 * The bridge sockets of one server, runtime-neutral: vets upgrades the same way on every
 * runtime (origin, subprotocol, token from the protocol list), wires each socket to its
 * BridgeConnection, and shuts them all down in order. A binding only translates its
 * runtime's WebSocket events into a BridgeSocket and calls `connect` once the socket is open.
 */
export class BridgeHub {
  private readonly open = new Set<BridgeConnection>();
  private stopping = false;

  constructor(readonly handlers: BridgeHandlers) {}

  /** Vets an upgrade request to BRIDGE_PATH (its headers and full URL). */
  check(headers: Headers, url: string): BridgeUpgrade | BridgeRefusal {
    const { allowedOrigins, localOnly } = this.handlers.core;
    const version = headers.get("sec-websocket-version");
    if (version !== WEBSOCKET_VERSION) {
      return {
        status: 426,
        reason: `sec-websocket-version: must be ${WEBSOCKET_VERSION}; got ${(version ?? "none").slice(0, 20)}`,
        headers: { "sec-websocket-version": WEBSOCKET_VERSION },
      };
    }
    const refused = refusedOrigin(headers, allowedOrigins, localOnly);
    if (refused) return { status: 403, reason: refused };
    return {
      protocol: selectProtocol(offeredProtocols(headers.get("sec-websocket-protocol"))),
      // Read now: Deno closes the request once it is upgraded.
      headers: bridgeRequestHeaders(headers),
      url,
    };
  }

  /** `check` for fetch runtimes (Bun, Deno): a refusal comes back as its Response. */
  checkRequest(req: Request): BridgeUpgrade | Response {
    const checked = this.check(req.headers, req.url);
    if (!("status" in checked)) return checked;
    return new Response(`${checked.reason}\n`, {
      status: checked.status,
      headers: { "content-type": "text/plain", ...checked.headers },
    });
  }

  /**
   * An upgraded socket is open: its connection sends Hello and takes the socket's messages
   * (`receive`), drain events (`drained`, when `socket.drainSignal`) and close (`closedByPeer`).
   */
  connect(upgrade: BridgeUpgrade, socket: BridgeSocket): BridgeConnection {
    const conn: BridgeConnection = new BridgeConnection(
      this.handlers,
      socket,
      upgrade.headers,
      upgrade.url,
      () => this.open.delete(conn),
    );
    this.open.add(conn);
    if (this.stopping) conn.stopAccepting();
    conn.open();
    return conn;
  }

  get size(): number {
    return this.open.size;
  }

  /**
   * Shutdown, first step (with the listeners closing): every socket, and any still opened,
   * answers new calls with CallEnd unavailable; running calls go on, within the grace period.
   */
  stopAccepting(): void {
    this.stopping = true;
    for (const conn of this.open) conn.stopAccepting();
  }

  /**
   * Shutdown, last step (after finishReplies): each socket closes with 1001 once its last
   * CallEnd is sent, at the latest after `waitMs`. Resolves when all are closed.
   */
  async close(waitMs = 250): Promise<void> {
    this.stopping = true;
    await Promise.all([...this.open].map((conn) => conn.closeWhenIdle(waitMs)));
  }
}
