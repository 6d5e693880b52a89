// The bridge's baseline: a raw `ws` server on node:http that echoes every message back.
// Prints "LISTENING <port>".
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { WebSocketServer } from "ws";

const server = http.createServer();
const wss = new WebSocketServer({ server });
wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
});
server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  process.stdout.write(`LISTENING ${(server.address() as AddressInfo).port}\n`);
});
