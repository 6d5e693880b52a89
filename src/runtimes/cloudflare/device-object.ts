import { DurableObject } from "cloudflare:workers";
import {
  BridgeConnection,
  type BridgeHandlers,
  createBridgeHandlers,
} from "../../bridge/server/bridge-connection.js";
import {
  bridgeRequestHeaders,
  offeredProtocols,
  selectProtocol,
} from "../../bridge/server/handshake.js";
import { createFetchApp, type FetchHandler } from "../../core/fetch-app.js";
import { canonicalHardwareId } from "../../core/identifiers.js";
import { DEFAULT_MEMORY_BOUNDS } from "../../core/memory/turns.js";
import type { Workflow } from "../../core/ports.js";
import {
  createPttCore,
  type PttCore,
  type PttCoreOptions,
  type StoreFactory,
} from "../../core/ptt-core.js";
import { createSessionStore } from "../../core/session-engine.js";
import { createStreamingHandlers, type StreamingHandlers } from "../../core/streaming-service.js";
import { systemClock } from "../../core/system-clock.js";
import { AlarmClock } from "./alarm-clock.js";
import { createDeviceClient, DEVICE_HEADER } from "./device-client.js";
import { createDurableMemory } from "./durable-memory.js";
import { configOf, type Env, loggerOf } from "./env.js";
import { createStorageDriver } from "./storage-driver.js";
import { createStorageJournal } from "./storage-journal.js";
import { createWorkersAiWorkflow } from "./workers-ai.js";

/**
 * One device's actor: its sessions (journaled in SQLite-backed storage, so they
 * survive hibernation, eviction and restarts), its running replies (so interrupt
 * and barge-in reach them), one alarm for the earliest deadline, and the bridge
 * sockets of its browsers (hibernatable). Calls of other devices that arrive on one
 * of its sockets are forwarded to their own objects.
 */
export class DeviceObject extends DurableObject<Env> {
  private readonly clock: AlarmClock;
  private readonly core: PttCore;
  private readonly bridge: BridgeHandlers;
  private readonly app: FetchHandler;
  private readonly sockets = new Map<WebSocket, BridgeConnection>();
  private device: string | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const config = configOf(env);
    const logger = loggerOf(config);
    this.clock = new AlarmClock(ctx.storage, (what, err) =>
      logger.error("storage refused the alarm", { op: what, error: String(err) }),
    );
    const kv = ctx.storage.kv;
    this.device = kv.get<string>("device");
    const clock = this.clock;
    const store: StoreFactory = ({ limits, onExpired }) =>
      createSessionStore({
        driver: createStorageDriver(kv, limits.maxOpenSessionsPerInstance),
        limits,
        clock,
        onExpired,
      });
    // The voice workflow's memory lives in this object's storage: it survives restarts.
    const memory = createDurableMemory(
      kv,
      config.core.voice?.memory ?? DEFAULT_MEMORY_BOUNDS,
      systemClock,
    );
    let workflow: Workflow | undefined;
    if (config.workflow === "workers-ai" && config.core.voice && env.AI) {
      workflow = createWorkersAiWorkflow(env.AI, config.core.voice, {
        fetch: (input, init) => fetch(input, init),
        memory,
        logger,
      });
    }
    // Replies are journaled in this object's storage too: a resume survives an eviction.
    const journal: PttCoreOptions["journal"] = ({ limits }) =>
      createStorageJournal(kv, clock, limits.maxBufferedBytesPerInstance);
    const core = createPttCore({ ...config.core, store, workflow, memory, logger, journal });
    this.core = core;
    const local = createStreamingHandlers(core);
    const handlers = this.route(local, createDeviceClient(env.DEVICE));
    this.bridge = createBridgeHandlers(core, {}, handlers);
    // The router every runtime serves: the Worker forwards each call's request as it came.
    this.app = createFetchApp(core, { handlers });
  }

  /** Own calls run here; a socket's calls for another device go to that device's object. */
  private route(local: StreamingHandlers, remote: StreamingHandlers): StreamingHandlers {
    const mine = (hardwareId: string) => {
      try {
        return canonicalHardwareId(hardwareId) === this.device;
      } catch {
        return true; // let the local handler answer INVALID_ARGUMENT
      }
    };
    return {
      streamAudio: (req, ctx) => (mine(req.hardwareId) ? local : remote).streamAudio(req, ctx),
      // A COLLECT or CANCEL of this device without the generator; another's goes by streamAudio.
      streamAudioOnce: async (req, ctx) =>
        mine(req.hardwareId) ? local.streamAudioOnce?.(req, ctx) : undefined,
      interruptSession: (req, ctx) =>
        (mine(req.hardwareId) ? local : remote).interruptSession(req, ctx),
    };
  }

  override async fetch(req: Request): Promise<Response> {
    const device = req.headers.get(DEVICE_HEADER);
    if (device && device !== this.device) {
      this.device = device;
      this.ctx.storage.kv.put("device", device);
    }
    const path = new URL(req.url).pathname;
    if (path === "/v1/bridge") return this.acceptSocket(req);
    if (path === "/ping") {
      // Readiness: the object runs and its storage answers.
      this.ctx.storage.kv.get("device");
      return new Response("ok\n");
    }
    return this.app(req);
  }

  private acceptSocket(req: Request): Response {
    const pair = new WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    // Hibernatable: an idle hold costs nothing; the object wakes for the next message.
    this.ctx.acceptWebSocket(server);
    // Attachments are capped at 16 KiB (cookies alone can exceed it): keep only what calls read.
    const auth = bridgeRequestHeaders(req.headers).get("authorization");
    server.serializeAttachment({ headers: auth ? [["authorization", auth]] : [], url: req.url });
    this.connection(server).open();
    // Ours only when offered as such (never a token, never a look-alike).
    const protocol = selectProtocol(offeredProtocols(req.headers.get("sec-websocket-protocol")));
    return new Response(null, {
      status: 101,
      webSocket: client,
      headers: protocol ? { "sec-websocket-protocol": protocol } : {},
    });
  }

  /** The socket's connection, rebuilt from its attachment after hibernation. */
  private connection(ws: WebSocket): BridgeConnection {
    let conn = this.sockets.get(ws);
    if (!conn) {
      const att = ws.deserializeAttachment() as { headers: [string, string][]; url: string };
      conn = new BridgeConnection(
        this.bridge,
        {
          send: (bytes) => ws.send(bytes),
          close: (code, reason) => ws.close(code, reason),
          bufferedAmount: () => 0,
        },
        new Headers(att.headers),
        att.url,
      );
      this.sockets.set(ws, conn);
    }
    return conn;
  }

  override webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): void {
    this.connection(ws).receive(typeof message === "string" ? message : new Uint8Array(message));
  }

  override webSocketClose(ws: WebSocket, code: number, reason: string): void {
    this.forget(ws);
    // The hibernation API leaves the closing handshake to us: answer the client's Close
    // (1005/1006/1015 are never sent on the wire).
    if (code !== 1005 && code !== 1006 && code !== 1015) {
      try {
        ws.close(code, reason);
      } catch {
        // already closed
      }
    }
  }

  override webSocketError(ws: WebSocket): void {
    this.forget(ws);
  }

  private forget(ws: WebSocket): void {
    this.sockets.get(ws)?.closedByPeer();
    this.sockets.delete(ws);
  }

  /** The store's sweep: its timer's, or (a fresh object woken by its alarm) one now. */
  override async alarm(): Promise<void> {
    if (!this.clock.fire()) await this.core.store.sweep();
  }
}
