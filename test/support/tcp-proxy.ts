import * as net from "node:net";

/**
 * A TCP proxy for network-failure tests: every accepted connection is piped to the
 * target (with backpressure both ways). `dropAll()` cuts every current connection
 * the way a dying server or NAT would: both halves destroyed at once, no close
 * handshake, bytes in flight lost. `refuse` makes new connections die on arrival.
 */
export interface TcpProxy {
  readonly port: number;
  /** `ws://127.0.0.1:<port><path>` */
  wsUrl(path: string): string;
  /** Connections accepted so far (refused ones included). */
  readonly accepted: number;
  /** Connections piped to the target right now. */
  readonly active: number;
  /** Bytes forwarded client→target, over every connection so far. */
  readonly bytesToTarget: number;
  /** Bytes forwarded target→client, over every connection so far. */
  readonly bytesToClient: number;
  /** While true, each new connection is destroyed as soon as it is accepted. */
  refuse: boolean;
  /**
   * Stops forwarding target→client bytes on every current connection (the client
   * sends, the target answers, the answers never arrive); returns how many.
   */
  stallReplies(): number;
  /**
   * Stops forwarding both ways on every current connection; returns how many. The connection
   * stays open and nothing arrives either way: a laptop lid closed, a phone gone from Wi-Fi.
   */
  blackhole(): number;
  /** Destroys both halves of every current connection; returns how many it cut. */
  dropAll(): number;
  /**
   * Like dropAll, but each half ends with a TCP RST instead of a FIN (a middlebox or a peer
   * that lost the connection's state): the other side gets ECONNRESET.
   */
  resetAll(): number;
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const pairs = new Set<[net.Socket, net.Socket]>();
  let accepted = 0;
  let refuse = false;
  let bytesToTarget = 0;
  let bytesToClient = 0;

  const server = net.createServer({ noDelay: true }, (client) => {
    accepted++;
    if (refuse) {
      client.destroy();
      return;
    }
    const upstream = net.connect({ host: target.host, port: target.port, noDelay: true });
    const pair: [net.Socket, net.Socket] = [client, upstream];
    pairs.add(pair);
    const cut = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", cut);
    upstream.on("error", cut);
    client.on("close", cut);
    upstream.on("close", cut);
    // Counted as forwarded: a stalled direction is paused, so its bytes are not read.
    client.on("data", (chunk: Buffer) => {
      bytesToTarget += chunk.byteLength;
    });
    upstream.on("data", (chunk: Buffer) => {
      bytesToClient += chunk.byteLength;
    });
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;

  const cutAll = (how: (socket: net.Socket) => void): number => {
    const cut = [...pairs];
    pairs.clear();
    for (const [client, upstream] of cut) {
      how(client);
      how(upstream);
    }
    return cut.length;
  };
  const dropAll = () => cutAll((socket) => socket.destroy());
  const stall = (from: net.Socket, to: net.Socket) => {
    from.unpipe(to);
    from.pause();
  };

  return {
    port,
    wsUrl: (path) => `ws://127.0.0.1:${port}${path}`,
    get accepted() {
      return accepted;
    },
    get active() {
      return pairs.size;
    },
    get bytesToTarget() {
      return bytesToTarget;
    },
    get bytesToClient() {
      return bytesToClient;
    },
    get refuse() {
      return refuse;
    },
    set refuse(value: boolean) {
      refuse = value;
    },
    stallReplies() {
      for (const [client, upstream] of pairs) stall(upstream, client);
      return pairs.size;
    },
    blackhole() {
      for (const [client, upstream] of pairs) {
        stall(upstream, client);
        stall(client, upstream);
      }
      return pairs.size;
    },
    dropAll,
    resetAll: () => cutAll((socket) => socket.resetAndDestroy()),
    async close() {
      dropAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
