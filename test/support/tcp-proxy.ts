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
  /** While true, each new connection is destroyed as soon as it is accepted. */
  refuse: boolean;
  /**
   * Stops forwarding target→client bytes on every current connection (the client
   * sends, the target answers, the answers never arrive); returns how many.
   */
  stallReplies(): number;
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

  return {
    port,
    wsUrl: (path) => `ws://127.0.0.1:${port}${path}`,
    get accepted() {
      return accepted;
    },
    get active() {
      return pairs.size;
    },
    get refuse() {
      return refuse;
    },
    set refuse(value: boolean) {
      refuse = value;
    },
    stallReplies() {
      for (const [client, upstream] of pairs) {
        upstream.unpipe(client);
        upstream.pause();
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
