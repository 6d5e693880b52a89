import { getEventListeners } from "node:events";
import { createClient } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import type { WebSocketFactory } from "../../src/bridge/client/channel.js";
import { connect } from "../../src/bridge/client/index.js";
import { StreamingService } from "../../src/gen/streaming_pb.js";
import { type NodeServer, serveNode } from "../../src/runtimes/node/server.js";
import { createPttServer, type PttServer } from "../../src/server/ptt-server.js";
import { commit, newDevice, newSession, replyText, streamAudio } from "../contract/calls.js";

// Regression (issue 13): under 11+ concurrent replies Node printed
// "MaxListenersExceededWarning ... abort listeners", which an operator reads as a leak.
// 50 replies at once on every transport, and not one warning.
const REPLIES = 50;

describe("no MaxListenersExceededWarning at any load", () => {
  let server: NodeServer;
  let ptt: PttServer;
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);

  beforeAll(async () => {
    process.on("warning", onWarning);
    ptt = createPttServer({
      graceMs: 0,
      core: {
        echoDelayMs: 20,
        limits: {
          maxConcurrentReplies: 4 * REPLIES,
          // The bridge case runs every reply on one device.
          maxRepliesPerDevice: 2 * REPLIES,
          maxOpenSessionsPerDevice: 2 * REPLIES,
        },
      },
    });
    server = await serveNode(ptt, { port: 0 });
  });
  beforeEach(() => {
    warnings.length = 0;
  });
  afterAll(async () => {
    process.off("warning", onWarning);
    await server?.close(0);
  });

  it.each([
    ["gRPC (fast path)", () => createGrpcTransport({ baseUrl: server.url })],
    [
      "Connect over HTTP/1.1",
      () => createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }),
    ],
    ["Connect over h2c", () => createConnectTransport({ baseUrl: server.url, httpVersion: "2" })],
    [
      "gRPC-Web over HTTP/1.1",
      () => createGrpcWebTransport({ baseUrl: server.url, httpVersion: "1.1" }),
    ],
  ])(
    `${REPLIES} concurrent replies over %s`,
    async (_name, transport) => {
      const client = createClient(StreamingService, transport());
      const said = "One. Two. Three.";
      const results = await Promise.all(
        Array.from({ length: REPLIES }, () =>
          streamAudio(client, commit(newDevice(), newSession(), { prompt: said })),
        ),
      );
      expect(results.map((r) => [r.code, replyText(r)])).toEqual(
        Array.from({ length: REPLIES }, () => [undefined, said]),
      );
      // Warnings are emitted on the next tick.
      await new Promise((r) => setImmediate(r));
      expect(warnings.map((w) => `${w.name}: ${w.message}`)).toEqual([]);
      // Not a leak either: the calls that ended stopped listening for the shutdown.
      expect(getEventListeners(ptt.shutdownSignal, "abort")).toHaveLength(0);
    },
    60_000,
  );

  it(`${REPLIES} concurrent replies over one bridge socket`, async () => {
    const client = connect(`${server.url.replace(/^http/, "ws")}/v1/bridge`, {
      hardwareId: newDevice(),
      WebSocket: WebSocket as unknown as WebSocketFactory,
    });
    try {
      const texts = await Promise.all(
        Array.from({ length: REPLIES }, async (_, i) => {
          const hold = client.hold();
          hold.text(`Reply ${i}.`);
          const reply = await hold.release();
          let text = "";
          for await (const part of reply) if (part.kind === "text") text += part.text;
          return text;
        }),
      );
      expect(texts).toEqual(Array.from({ length: REPLIES }, (_, i) => `Reply ${i}.`));
    } finally {
      client.close();
    }
    await new Promise((r) => setImmediate(r));
    expect(warnings.map((w) => `${w.name}: ${w.message}`)).toEqual([]);
  }, 60_000);
});
