export { Code, ConnectError } from "@connectrpc/connect";
export {
  BridgeChannel,
  type ChannelOptions,
  type ChannelState,
  type WebSocketFactory,
  type WebSocketLike,
} from "./channel.js";
export {
  type ChunkAck,
  connect,
  Hold,
  type HoldOptions,
  Ptt,
  type PttOptions,
  type ReleaseOptions,
  type Reply,
  type ReplyPart,
  type ReplyStatus,
  type TextMode,
} from "./ptt.js";
export { createBridgeTransport } from "./transport.js";
