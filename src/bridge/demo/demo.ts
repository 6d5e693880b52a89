// The push-to-talk demo page's script (bundled into demo-assets.ts by `npm run build:demo`).
// Browser only: hold #talk or the space bar to stream microphone audio and text snapshots
// as numbered chunks; release to commit and play the streamed reply.
import {
  type ChannelState,
  type ChunkAck,
  Code,
  connect,
  type Hold,
  type Ptt,
  type Reply,
  type ReplyPart,
} from "../client/index.js";

const HARDWARE_KEY = "ptt-edge.demo.hardware-id";
const HARDWARE_ID = /^[A-Za-z0-9._:@-]{1,128}$/;
const TIMESLICE_MS = 250;
/** How long a release waits for the speech recogniser's final result. */
const SPEECH_FINAL_WAIT_MS = 500;
/** The microphone is closed after this long without a hold (no lingering "recording" dot). */
const MIC_IDLE_MS = 20_000;
const MAX_CHUNK_ROWS = 200;
const TYPING_PAUSE_MS = 150;

function el<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`demo page: #${id} is missing`);
  return found as T;
}

const ui = {
  state: el<HTMLOutputElement>("state"),
  hardware: el<HTMLElement>("hardware"),
  text: el<HTMLTextAreaElement>("text"),
  talk: el<HTMLButtonElement>("talk"),
  interrupt: el<HTMLButtonElement>("interrupt"),
  useMic: el<HTMLInputElement>("use-mic"),
  useSpeech: el<HTMLInputElement>("use-speech"),
  note: el<HTMLElement>("note"),
  reply: el<HTMLElement>("reply"),
  heard: el<HTMLElement>("heard"),
  transcript: el<HTMLElement>("transcript"),
  speakText: el<HTMLInputElement>("speak-text"),
  latency: el<HTMLOutputElement>("latency"),
  meta: el<HTMLElement>("meta"),
  acks: el<HTMLElement>("acks"),
  ackCounts: el<HTMLElement>("ack-counts"),
  chunks: el<HTMLOListElement>("chunks"),
};

function note(message: string): void {
  ui.note.textContent = message;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// ---------------------------------------------------------------- identity

/** A random id kept in localStorage: `web-` and 16 hex digits (docs/protocol.md §2 alphabet). */
function hardwareId(): string {
  try {
    const kept = localStorage.getItem(HARDWARE_KEY);
    if (kept && HARDWARE_ID.test(kept) && kept.toLowerCase() !== "unknown") return kept;
  } catch {
    // storage disabled: a fresh id per page load
  }
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  const id = `web-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
  try {
    localStorage.setItem(HARDWARE_KEY, id);
  } catch {
    // not persisted
  }
  return id;
}

// ---------------------------------------------------------------- microphone

let micStream: Promise<MediaStream | undefined> | undefined;
let micIdleTimer: ReturnType<typeof setTimeout> | undefined;

function recorderFormat(): { mimeType: string; encoding: string } | undefined {
  if (typeof MediaRecorder === "undefined") return undefined;
  const candidates = [
    { mimeType: "audio/webm;codecs=opus", encoding: "webm_opus" },
    { mimeType: "audio/ogg;codecs=opus", encoding: "ogg_opus" },
  ];
  return candidates.find((c) => MediaRecorder.isTypeSupported(c.mimeType));
}

function disableInput(box: HTMLInputElement, why: string): void {
  box.checked = false;
  box.disabled = true;
  box.parentElement?.setAttribute("title", why);
}

/** The microphone stream, opened on the first hold and kept while holds keep coming. */
function microphone(): Promise<MediaStream | undefined> {
  clearTimeout(micIdleTimer);
  micStream ??= navigator.mediaDevices
    .getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true } })
    .catch((err: unknown) => {
      disableInput(ui.useMic, describe(err));
      note(`Microphone unavailable (${describe(err)}): text only.`);
      return undefined;
    });
  return micStream;
}

function closeMicrophoneLater(): void {
  clearTimeout(micIdleTimer);
  micIdleTimer = setTimeout(() => {
    const stream = micStream;
    micStream = undefined;
    void stream?.then((s) => {
      for (const t of s?.getTracks() ?? []) t.stop();
    });
  }, MIC_IDLE_MS);
}

// ---------------------------------------------------------------- speech recognition

interface SpeechResultList {
  readonly length: number;
  [index: number]: { readonly isFinal: boolean; [alt: number]: { transcript: string } };
}
interface SpeechRecognizer {
  continuous: boolean;
  interimResults: boolean;
  lang: string;
  onresult: ((ev: { results: SpeechResultList }) => void) | null;
  onerror: ((ev: { error: string }) => void) | null;
  onend: (() => void) | null;
  start(): void;
  stop(): void;
  abort(): void;
}
type SpeechRecognizerCtor = new () => SpeechRecognizer;

const Speech: SpeechRecognizerCtor | undefined =
  (window as { SpeechRecognition?: SpeechRecognizerCtor }).SpeechRecognition ??
  (window as { webkitSpeechRecognition?: SpeechRecognizerCtor }).webkitSpeechRecognition;

/** Errors after which recognition will not work on this page: stop offering it. */
const SPEECH_FATAL = new Set([
  "not-allowed",
  "service-not-allowed",
  "network",
  "audio-capture",
  "language-not-supported",
]);

// ---------------------------------------------------------------- reply audio

/** Plays PCM reply parts back to back through Web Audio. */
class Player {
  private ctx: AudioContext | undefined;
  private playhead = 0;
  private readonly sources = new Set<AudioBufferSourceNode>();

  /** Call from a user gesture so that later playback is allowed. */
  unlock(): void {
    if (typeof AudioContext === "undefined") return;
    this.ctx ??= new AudioContext();
    if (this.ctx.state === "suspended") void this.ctx.resume().catch(() => {});
  }

  /** Queues one part after the previous ones; returns its duration in seconds (0: not played). */
  play(part: Extract<ReplyPart, { kind: "audio" }>): number {
    this.unlock();
    const ctx = this.ctx;
    if (!ctx) return 0;
    const samples = toFloat32(part.data, part.dtype);
    if (!samples) {
      note(`Reply audio in dtype "${part.dtype}" is not playable here.`);
      return 0;
    }
    const channels = Math.max(1, part.channels);
    const frames = Math.floor(samples.length / channels);
    if (frames === 0) return 0;
    let buffer: AudioBuffer;
    try {
      buffer = ctx.createBuffer(channels, frames, part.sampleRate);
    } catch (err) {
      note(`Reply audio not playable: ${describe(err)}`);
      return 0;
    }
    for (let c = 0; c < channels; c++) {
      const out = buffer.getChannelData(c);
      for (let i = 0; i < frames; i++) out[i] = samples[i * channels + c] ?? 0;
    }
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(ctx.destination);
    const at = Math.max(ctx.currentTime + 0.03, this.playhead);
    source.start(at);
    this.playhead = at + buffer.duration;
    this.sources.add(source);
    source.onended = () => this.sources.delete(source);
    return buffer.duration;
  }

  stop(): void {
    for (const s of this.sources) s.stop();
    this.sources.clear();
    this.playhead = 0;
  }
}

/** Interleaved little-endian PCM as floats in [-1, 1]. */
function toFloat32(data: Uint8Array, dtype: string): Float32Array | undefined {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  switch (dtype) {
    case "int16": {
      const out = new Float32Array(data.byteLength >> 1);
      for (let i = 0; i < out.length; i++) out[i] = view.getInt16(i * 2, true) / 32768;
      return out;
    }
    case "float32": {
      const out = new Float32Array(data.byteLength >> 2);
      for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
      return out;
    }
    default:
      return undefined;
  }
}

// ---------------------------------------------------------------- chunk list

class ChunkView {
  sent = 0;
  acked = 0;
  failed = 0;

  constructor(private readonly hold: Hold) {
    ui.chunks.replaceChildren();
    this.render();
  }

  /** Tracks one chunk's ack in the list; `send` is called now and numbers the chunk. */
  track(kind: "text" | "audio", what: string, send: () => Promise<ChunkAck>): void {
    const seq = ++this.sent;
    const row = document.createElement("li");
    row.dataset.kind = kind;
    row.dataset.state = "sent";
    row.append(
      cell("seq", `#${seq}`),
      cell("kind", kind),
      cell("what", what),
      cell("outcome", "sent"),
    );
    ui.chunks.append(row);
    while (ui.chunks.childElementCount > MAX_CHUNK_ROWS) ui.chunks.firstElementChild?.remove();
    row.scrollIntoView({ block: "nearest" });
    const outcome = row.lastElementChild as HTMLElement;
    let ack: Promise<ChunkAck>;
    try {
      ack = send();
    } catch (err) {
      ack = Promise.reject(err);
    }
    this.render();
    ack.then(
      (ack) => {
        this.acked++;
        row.dataset.state = "acked";
        outcome.textContent = ack.outcome;
        this.render();
      },
      (err: unknown) => {
        this.failed++;
        row.dataset.state = "failed";
        outcome.textContent = "failed";
        row.title = describe(err);
        this.render();
      },
    );
  }

  private render(): void {
    ui.acks.dataset.sent = String(this.sent);
    ui.acks.dataset.acked = String(this.acked);
    ui.acks.dataset.failed = String(this.failed);
    const failed = this.failed ? ` · failed ${this.failed}` : "";
    ui.ackCounts.textContent = `sent ${this.sent} · acked ${this.acked} · pending ${this.hold.pending}${failed}`;
  }
}

function cell(className: string, text: string): HTMLSpanElement {
  const span = document.createElement("span");
  span.className = className;
  span.textContent = text;
  return span;
}

// ---------------------------------------------------------------- one hold

/** One press of the key: its microphone recording, speech recognition and chunks. */
class Turn {
  readonly hold: Hold;
  private readonly chunks: ChunkView;
  private audioQueue: Promise<void> = Promise.resolve();
  private recorder: MediaRecorder | undefined;
  private speech: SpeechRecognizer | undefined;
  private speechEnded: Promise<void> = Promise.resolve();
  private speechText = "";
  private lastText = "";
  private releasing = false;
  private sealed = false;

  constructor(ptt: Ptt) {
    this.hold = ptt.hold({ mode: "snapshot" });
    this.chunks = new ChunkView(this.hold);
  }

  get sentText(): string {
    return this.lastText;
  }

  start(): void {
    this.sendText();
    // Not awaited: a release before the microphone is open (or allowed) sends what it has.
    if (ui.useMic.checked) void this.startMic();
    if (ui.useSpeech.checked && Speech) this.startSpeech(Speech);
  }

  /** The transcript so far: the text field, then what speech recognition heard. */
  sendText(): void {
    if (this.sealed) return;
    const text = [ui.text.value.trim(), this.speechText].filter((s) => s.length > 0).join(" ");
    if (text === "" || text === this.lastText) return;
    this.lastText = text;
    this.chunks.track("text", JSON.stringify(text), () => this.hold.text(text));
  }

  /** Stops capturing, sends what is left, and commits. */
  async release(): Promise<Reply | undefined> {
    this.releasing = true;
    await Promise.all([this.stopRecorder(), this.stopSpeech()]);
    await this.audioQueue;
    this.sendText();
    this.sealed = true;
    if (this.chunks.sent === 0) {
      note("Nothing to send: type something, or allow the microphone.");
      return undefined;
    }
    return this.hold.release();
  }

  /** Abandons the hold: nothing more is sent and the server drops what it has. */
  async cancel(): Promise<void> {
    this.releasing = true;
    this.sealed = true;
    this.recorder?.stop();
    this.speech?.abort();
    await this.hold.cancel();
  }

  private async startMic(): Promise<void> {
    const format = recorderFormat();
    if (!format || !navigator.mediaDevices?.getUserMedia) {
      disableInput(ui.useMic, "this browser cannot record webm/ogg opus");
      return;
    }
    const stream = await microphone();
    if (!stream || this.releasing) return;
    try {
      const recorder = new MediaRecorder(stream, { mimeType: format.mimeType });
      recorder.ondataavailable = (ev) => this.queueAudio(ev.data, format.encoding);
      recorder.onerror = () => note("Recording failed; the hold goes on with text only.");
      recorder.start(TIMESLICE_MS);
      this.recorder = recorder;
    } catch (err) {
      note(`Recording did not start (${describe(err)}): text only.`);
    }
  }

  /** Sends recorded chunks in recording order (reading a Blob is async). */
  private queueAudio(blob: Blob, encoding: string): void {
    if (blob.size === 0) return;
    this.audioQueue = this.audioQueue
      .then(async () => {
        const bytes = new Uint8Array(await blob.arrayBuffer());
        if (this.sealed) return;
        this.chunks.track("audio", `${bytes.byteLength} B ${encoding}`, () =>
          this.hold.audio(bytes, { encoding }),
        );
      })
      .catch((err: unknown) => note(`An audio chunk was lost: ${describe(err)}`));
  }

  /** Resolves after the last `dataavailable`, which the browser fires before `stop`. */
  private stopRecorder(): Promise<void> {
    const recorder = this.recorder;
    if (!recorder || recorder.state === "inactive") return Promise.resolve();
    return new Promise((resolve) => {
      recorder.addEventListener("stop", () => resolve(), { once: true });
      recorder.stop();
    });
  }

  private startSpeech(Ctor: SpeechRecognizerCtor): void {
    const rec = new Ctor();
    rec.continuous = true;
    rec.interimResults = true;
    rec.lang = navigator.language;
    rec.onresult = (ev) => {
      let heard = "";
      for (let i = 0; i < ev.results.length; i++) heard += ev.results[i]?.[0]?.transcript ?? "";
      this.speechText = heard.trim();
      this.sendText();
    };
    rec.onerror = (ev) => {
      if (!SPEECH_FATAL.has(ev.error)) return;
      disableInput(ui.useSpeech, ev.error);
      note(`Speech recognition unavailable (${ev.error}).`);
    };
    this.speechEnded = new Promise((resolve) => {
      rec.onend = () => resolve();
    });
    try {
      rec.start();
      this.speech = rec;
    } catch (err) {
      note(`Speech recognition did not start: ${describe(err)}`);
    }
  }

  /** Waits briefly for the final result when something was heard, else drops recognition. */
  private async stopSpeech(): Promise<void> {
    const rec = this.speech;
    if (!rec) return;
    if (this.speechText === "") {
      rec.abort();
      return;
    }
    rec.stop();
    await Promise.race([this.speechEnded, sleep(SPEECH_FINAL_WAIT_MS)]);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------- the page

const player = new Player();
const device = hardwareId();
ui.hardware.textContent = device;
if (!Speech) disableInput(ui.useSpeech, "this browser has no speech recognition");
if (!navigator.mediaDevices?.getUserMedia || !recorderFormat()) {
  disableInput(ui.useMic, "no microphone recording in this browser or context");
}

function showState(state: ChannelState): void {
  ui.state.textContent = state;
  ui.state.dataset.state = state;
  ui.talk.disabled = state === "closed";
}

const token = new URLSearchParams(location.hash.slice(1)).get("token") ?? undefined;
const wsUrl = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/v1/bridge`;
const ptt = connect(wsUrl, { hardwareId: device, token, onState: showState });
showState(ptt.channel.state);

let holding: { turn: Turn; by: "pointer" | "key" } | undefined;
/** The turn whose reply the page shows; an older reply stops rendering. */
let shownTurn: Turn | undefined;

function press(by: "pointer" | "key"): void {
  if (holding || ui.talk.disabled) return;
  player.unlock();
  player.stop(); // the server interrupts running replies on the first chunk too
  const turn = new Turn(ptt);
  holding = { turn, by };
  ui.talk.setAttribute("aria-pressed", "true");
  ui.talk.textContent = "Release to send";
  note("");
  turn.start();
}

function showReleased(): void {
  ui.talk.setAttribute("aria-pressed", "false");
  ui.talk.textContent = "Hold to talk";
  closeMicrophoneLater();
}

async function releaseHold(by: "pointer" | "key"): Promise<void> {
  if (!holding || holding.by !== by) return;
  const releasedAt = performance.now();
  const { turn } = holding;
  holding = undefined;
  showReleased();
  // The client keeps the hold and commits once the socket is back: say so, not nothing.
  const waiting = ptt.channel.state !== "open";
  if (waiting) note("Released: waiting for the connection to send it…");
  try {
    const reply = await turn.release();
    if (waiting) note("");
    if (!reply) return;
    if (ui.text.value.trim() !== "" && turn.sentText.startsWith(ui.text.value.trim())) {
      ui.text.value = "";
    }
    await showReply(turn, reply, releasedAt);
  } catch (err) {
    note(`Not sent: ${describe(err)}`);
  }
}

async function cancelHold(): Promise<void> {
  if (!holding) return;
  const { turn } = holding;
  holding = undefined;
  showReleased();
  try {
    await turn.cancel();
    note("Hold cancelled: nothing was committed.");
  } catch (err) {
    note(`Cancel failed: ${describe(err)}`);
  }
}

async function showReply(turn: Turn, reply: Reply, releasedAt: number): Promise<void> {
  shownTurn = turn;
  const current = () => shownTurn === turn;
  ui.reply.replaceChildren();
  ui.heard.hidden = true;
  globalThis.speechSynthesis?.cancel();
  ui.reply.dataset.status = "streaming";
  ui.latency.textContent = "…";
  delete ui.latency.dataset.ms;
  ui.meta.textContent = "";
  let first = true;
  let audioParts = 0;
  let audioSeconds = 0;
  try {
    for await (const part of reply) {
      if (!current()) continue;
      if (first) {
        first = false;
        const ms = Math.round(performance.now() - releasedAt);
        ui.latency.textContent = `${ms} ms`;
        ui.latency.dataset.ms = String(ms);
      }
      if (part.kind === "text") {
        ui.reply.append(part.text);
      } else if (part.kind === "audio") {
        audioParts++;
        audioSeconds += player.play(part);
      } else {
        const label = part.featureId ? `action ${part.featureId}` : "action";
        ui.reply.append(cell("action", `\n[${label}] ${part.json}\n`));
      }
    }
  } catch {
    // the same error is in reply.done
  }
  const status = await reply.done;
  if (!current()) return;
  if (first) ui.latency.textContent = "no reply parts";
  const interrupted = status.error?.code === Code.Canceled;
  const commitMs = status.metadata.get("ptt-commit-ms");
  const turnId = status.metadata.get("ptt-turn-id");
  const facts = [
    commitMs ? `${Math.round(Number(commitMs))} ms of it in the server` : "",
    audioParts ? `${audioSeconds.toFixed(2)} s of audio in ${audioParts} parts` : "",
    interrupted
      ? "interrupted"
      : status.error
        ? `failed: ${status.error.message}`
        : first
          ? ""
          : "complete",
    turnId ? `turn ${turnId.slice(0, 8)}` : "",
  ].filter((s) => s !== "");
  ui.meta.title = turnId ? `turn ${turnId}` : "";
  ui.meta.textContent = facts.length ? `(${facts.join(" · ")})` : "";
  // An audio hold's transcript, as the server heard it (the voice workflow's ptt-transcript).
  const heard = status.metadata.get("ptt-transcript");
  if (heard) {
    ui.transcript.textContent = safeDecode(heard);
    ui.heard.hidden = false;
  }
  const said = ui.reply.textContent ?? "";
  if (
    ui.speakText.checked &&
    audioParts === 0 &&
    !status.error &&
    said.trim() &&
    globalThis.speechSynthesis
  ) {
    globalThis.speechSynthesis.speak(new SpeechSynthesisUtterance(said));
  }
  ui.reply.dataset.audioParts = String(audioParts);
  ui.reply.dataset.status = interrupted ? "interrupted" : status.error ? "error" : "done";
}

function safeDecode(header: string): string {
  try {
    return decodeURIComponent(header);
  } catch {
    return header;
  }
}

function isOtherControl(target: EventTarget | null): boolean {
  return (
    target instanceof Element &&
    target !== ui.talk &&
    target.closest("input, textarea, select, button, a, [contenteditable]") !== null
  );
}

ui.talk.addEventListener("pointerdown", (ev) => {
  if (ev.button !== 0) return;
  ui.talk.setPointerCapture(ev.pointerId);
  press("pointer");
});
ui.talk.addEventListener("pointerup", () => void releaseHold("pointer"));
ui.talk.addEventListener("pointercancel", () => void releaseHold("pointer"));
// Keep the focus where it is (typing while holding) and no long-press menu on touch screens.
ui.talk.addEventListener("mousedown", (ev) => ev.preventDefault());
ui.talk.addEventListener("contextmenu", (ev) => ev.preventDefault());

// Typing while holding sends a new snapshot once the typing pauses (release sends the last one).
let typingTimer: ReturnType<typeof setTimeout> | undefined;
ui.text.addEventListener("input", () => {
  clearTimeout(typingTimer);
  typingTimer = setTimeout(() => holding?.turn.sendText(), TYPING_PAUSE_MS);
});

/** A space went into a field during a space-bar hold: its keyup is typing, not the release. */
let typedSpace = false;
document.addEventListener("keydown", (ev) => {
  if (ev.code !== "Space") return;
  if (isOtherControl(ev.target)) {
    if (holding?.by === "key") typedSpace = true;
    return;
  }
  ev.preventDefault();
  if (!ev.repeat) press("key");
});
document.addEventListener("keyup", (ev) => {
  if (ev.code === "Escape" && holding) {
    ev.preventDefault();
    void cancelHold();
    return;
  }
  if (ev.code !== "Space" || holding?.by !== "key") return;
  if (typedSpace && isOtherControl(ev.target)) {
    typedSpace = false;
    return;
  }
  ev.preventDefault();
  typedSpace = false;
  void releaseHold("key");
});
// A key or pointer released outside the window never reaches the page.
window.addEventListener("blur", () => {
  if (holding) void releaseHold(holding.by);
});

ui.interrupt.addEventListener("click", () => {
  player.stop();
  ptt.interrupt().then(
    (res) => {
      const n = res.interruptedSessions.length;
      note(`Interrupted ${n} running ${n === 1 ? "reply" : "replies"}.`);
    },
    (err: unknown) => note(`Interrupt failed: ${describe(err)}`),
  );
});
