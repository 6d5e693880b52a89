import type { Authenticator } from "./auth.js";
import { createMemoryStore } from "./drivers/memory.js";
import { createInProcessJournal } from "./journal/in-process-journal.js";
import { type Limits, resolveLimits } from "./limits.js";
import { createInProcessMemory } from "./memory/in-process-memory.js";
import { DEFAULT_MEMORY_BOUNDS } from "./memory/turns.js";
import { Metrics } from "./metrics.js";
import type {
  Clock,
  ConversationMemory,
  Logger,
  ReplyBus,
  ReplyJournal,
  SessionStore,
  Workflow,
} from "./ports.js";
import { DeviceRateLimits } from "./rate-limits.js";
import { ReplyRegistry } from "./reply-registry.js";
import { ReplyRuns } from "./reply-run.js";
import { applyRemoteStop, localReplyBus } from "./reply-stops.js";
import { systemClock } from "./system-clock.js";
import { keepByteOrderMarks } from "./text-decoding.js";
import { createOpenAiWorkflow } from "./voice/openai-workflow.js";
import type { VoiceSettings } from "./voice/voice-config.js";
import { createEchoWorkflow } from "./workflows/echo.js";

/** When a new hold stops the device's running replies (docs/protocol.md §3). */
export type BargeIn = "press" | "commit" | "off";

/**
 * Builds the store with what the core settled: merged limits, its clock, and the
 * expirations counter. A runtime passes this rather than repeating that wiring.
 */
export type StoreFactory = (deps: {
  limits: Readonly<Limits>;
  clock: Clock;
  onExpired: (count: number) => void;
}) => SessionStore;

export interface PttCoreOptions {
  limits?: Partial<Limits>;
  clock?: Clock;
  /** Built from limits and clock when absent: the in-memory store. */
  store?: SessionStore | StoreFactory;
  /** Where replies are journaled for resuming; in this process when absent. */
  journal?: ReplyJournal | ((deps: { limits: Readonly<Limits>; clock: Clock }) => ReplyJournal);
  /**
   * How long a reply stays resumable after its caller hung up or it ended (PTT_RESUME_WINDOW_MS,
   * default 30 s); 0: a hang-up stops the reply and nothing is journaled.
   */
  resumeWindowMs?: number;
  /** How stops reach replies on other instances; none needed for one process (the default). */
  replyBus?: ReplyBus;
  /** The workflow; when absent, the voice workflow if `voice` is set, else the echo workflow. */
  workflow?: Workflow;
  /** The voice workflow's settings (PTT_WORKFLOW=openai), from configFromEnv. */
  voice?: VoiceSettings | undefined;
  /** Per-device conversation memory; in this process when absent. */
  memory?: ConversationMemory | undefined;
  /** The fetch the voice workflow calls its upstreams with (tests and runtimes may wrap it). */
  fetch?: typeof fetch | undefined;
  logger?: Logger;
  auth?: Authenticator;
  bargeIn?: BargeIn;
  /** The reply's final end_message. */
  endMessage?: string;
  /** Pause between echo sentences, when the echo workflow is used. */
  echoDelayMs?: number;
  /** Browser origins besides the server's own that may open the bridge ("*": any). */
  allowedOrigins?: string[];
  /** The server listens on loopback only: browsers must name it by a loopback name too. */
  localOnly?: boolean;
  version?: string;
}

/** Everything the handlers share; built once per process (or per Durable Object). */
export interface PttCore {
  readonly limits: Readonly<Limits>;
  readonly clock: Clock;
  readonly store: SessionStore;
  readonly workflow: Workflow;
  /** Per-device conversation memory (the voice workflow's; reset by a client's reset_memory). */
  readonly memory: ConversationMemory;
  readonly logger: Logger;
  readonly auth: Authenticator | undefined;
  readonly bargeIn: BargeIn;
  readonly endMessage: string;
  readonly metrics: Metrics;
  readonly replies: ReplyRegistry;
  /** Per-device COLLECT and COMMIT rates (per instance; per device object on Workers). */
  readonly rates: DeviceRateLimits;
  readonly replyBus: ReplyBus;
  /** Reply journals (resumable COMMITs, docs/protocol.md §9). */
  readonly journal: ReplyJournal;
  /** This instance's replies not yet settled (their memory not yet written). */
  readonly runs: ReplyRuns;
  readonly resumeWindowMs: number;
  readonly allowedOrigins: readonly string[];
  readonly localOnly: boolean;
  readonly version: string;
}

export const DEFAULT_RESUME_WINDOW_MS = 30_000;

export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};

export function createPttCore(options: PttCoreOptions = {}): PttCore {
  keepByteOrderMarks();
  const limits = resolveLimits(options.limits);
  const clock = options.clock ?? systemClock;
  const metrics = new Metrics();
  const onExpired = (n: number) => {
    metrics.expirations += n;
  };
  const store =
    typeof options.store === "function"
      ? options.store({ limits, clock, onExpired })
      : (options.store ?? createMemoryStore({ limits, clock, onExpired }));
  const memory =
    options.memory ??
    createInProcessMemory({ bounds: options.voice?.memory ?? DEFAULT_MEMORY_BOUNDS, clock });
  const logger = options.logger ?? silentLogger;
  const journal =
    typeof options.journal === "function"
      ? options.journal({ limits, clock })
      : (options.journal ??
        createInProcessJournal({ clock, maxBytes: limits.maxBufferedBytesPerInstance }));
  const voice = options.voice;
  const core: PttCore = {
    limits,
    clock,
    store,
    memory,
    workflow:
      options.workflow ??
      (voice?.workflow === "openai"
        ? createOpenAiWorkflow(voice, {
            // Looked up per call, so a runtime or test that wraps fetch later is honoured.
            fetch: options.fetch ?? ((input, init) => fetch(input, init)),
            memory,
            logger,
          })
        : createEchoWorkflow({ clock, delayMs: options.echoDelayMs ?? 0 })),
    logger,
    auth: options.auth,
    bargeIn: options.bargeIn ?? "press",
    endMessage: options.endMessage ?? "RESPONSE_COMPLETED",
    metrics,
    replies: new ReplyRegistry(limits, clock),
    rates: new DeviceRateLimits(limits, clock),
    replyBus: options.replyBus ?? localReplyBus,
    journal,
    runs: new ReplyRuns(),
    resumeWindowMs: options.resumeWindowMs ?? DEFAULT_RESUME_WINDOW_MS,
    allowedOrigins: options.allowedOrigins ?? [],
    localOnly: options.localOnly ?? false,
    version: options.version ?? "0.1.0",
  };
  core.replyBus.listen((stop) => applyRemoteStop(core, stop));
  return core;
}
