// The public surface of the runtime-neutral core (named exports only).
export {
  type ApiKey,
  type Authenticator,
  type AuthSettings,
  createAuthenticator,
  createStaticTokenAuth,
  type JwtSettings,
  type JwtVerifier,
  type JwtVerifierFactory,
} from "./auth.js";
export { corsHeaders, corsMiddleware } from "./cors.js";
export {
  createMemoryDriver,
  createMemoryStore,
  type JournalEntry,
  type MemoryDriverOptions,
  type MemoryStoreOptions,
  type RecordJournal,
} from "./drivers/memory.js";
export {
  configFromEnv,
  type Env,
  limitEnvName,
  requireGrpcPort,
  type ServerConfig,
} from "./env-config.js";
export { createFetchApp, type FetchAppOptions, type FetchHandler } from "./fetch-app.js";
export { createHttpApp } from "./http-app.js";
export { createJsonLogger, type LogLevel } from "./json-logger.js";
export { DEFAULT_LIMITS, LIMIT_NAMES, type Limits } from "./limits.js";
export {
  createDenoKvMemory,
  type DenoKvMemoryOptions,
  type MemoryKv,
} from "./memory/deno-kv-memory.js";
export { createInProcessMemory } from "./memory/in-process-memory.js";
export {
  appendBounded,
  DEFAULT_MEMORY_BOUNDS,
  type MemoryBounds,
  type MemoryTurn,
  turnsOf,
} from "./memory/turns.js";
export type {
  CancelResult,
  Clock,
  CollectResult,
  ConversationMemory,
  Logger,
  ReplyContext,
  ReplyPart,
  SessionStore,
  StoreStats,
  Workflow,
} from "./ports.js";
export { type BargeIn, createPttCore, type PttCore, type PttCoreOptions } from "./ptt-core.js";
export type { Chunk, CommittedTurn, SessionKey } from "./session.js";
export { createSessionStore, type SessionEngineOptions } from "./session-engine.js";
export { finishReplies } from "./shutdown.js";
export type { Step, StepView, StepWrite, StoreDriver } from "./store-driver.js";
export {
  createServiceImpl,
  createStreamingHandlers,
  routes,
  type StreamingHandlers,
} from "./streaming-service.js";
export { systemClock } from "./system-clock.js";
export { createOpenAiWorkflow, type VoiceDeps } from "./voice/openai-workflow.js";
export type { ChatMessage, ChatModel, SpeechSynth, Transcriber } from "./voice/ports.js";
export type { VoiceSettings, WorkflowName } from "./voice/voice-config.js";
export { createVoiceWorkflow, type VoiceWorkflowOptions } from "./voice/voice-workflow.js";
export { createEchoWorkflow, type EchoOptions } from "./workflows/echo.js";
