import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import {
  type CallResult,
  ChunkMode,
  clientFor,
  collect,
  commit,
  newDevice,
  newSession,
  replyText,
  streamAudio,
} from "./calls.js";
import { longText } from "./commit.cases.js";
import type { Capabilities, Target } from "./target.js";

function expectExhausted(r: CallResult, limit: string): void {
  expect(r.code).toBe(Code.ResourceExhausted);
  expect(r.message).toContain(limit);
}

/** docs/protocol.md §5: each breach is RESOURCE_EXHAUSTED naming the limit, and nothing stored is lost. */
export function limitCases(caps: Capabilities, target: () => Target): void {
  describe("limits (§5)", () => {
    it("chunk_text per chunk", async () => {
      const t = target();
      const client = clientFor(t);
      const hw = newDevice();
      const sid = newSession();
      await streamAudio(client, collect(hw, sid, 1, "kept "));
      const big = "é".repeat(t.limits.maxChunkTextBytes / 2 + 1); // over the limit in UTF-8 bytes
      const r = await streamAudio(client, collect(hw, sid, 2, big));
      expectExhausted(r, "max_chunk_text_bytes");
      expect(r.frames).toEqual([{ case: "errorMessage", value: r.message }]);
      await streamAudio(client, collect(hw, sid, 3, "too"));
      expect(replyText(await streamAudio(client, commit(hw, sid)))).toBe("kept too");
    });

    it("merged text per session", async () => {
      const t = target();
      const client = clientFor(t);
      const hw = newDevice();
      const sid = newSession();
      const piece = "x".repeat(t.limits.maxChunkTextBytes - 1);
      let seq = 0;
      let stored = "";
      for (;;) {
        const text = `${piece}${seq % 10}`;
        const r = await streamAudio(
          client,
          collect(hw, sid, ++seq, text, { chunkMode: ChunkMode.DELTA }),
        );
        if (r.code !== undefined) {
          expectExhausted(r, "max_session_text_bytes");
          break;
        }
        stored += text;
      }
      const done = await streamAudio(client, commit(hw, sid));
      expect(replyText(done)).toBe(stored);
    });

    it("chunks per session", async () => {
      const t = target();
      const client = clientFor(t);
      const hw = newDevice();
      const sid = newSession();
      for (let i = 1; i <= t.limits.maxChunksPerSession; i++) {
        const chunk = collect(hw, sid, i, "a ", { chunkMode: ChunkMode.DELTA });
        expect((await streamAudio(client, chunk)).code).toBeUndefined();
      }
      const over = await streamAudio(
        client,
        collect(hw, sid, t.limits.maxChunksPerSession + 1, "b"),
      );
      expectExhausted(over, "max_chunks_per_session");
      // A duplicate of a stored chunk is still acked.
      const dup = await streamAudio(client, collect(hw, sid, 1, "a "));
      expect(dup.trailers.get("ptt-collect")).toBe("duplicate");
      const r = await streamAudio(client, commit(hw, sid));
      expect(replyText(r)).toBe("a ".repeat(t.limits.maxChunksPerSession));
    });

    it("audio per session", async () => {
      const t = target();
      const client = clientFor(t);
      const hw = newDevice();
      const sid = newSession();
      const size = t.limits.maxAudioBytesPerSession / 4;
      const audio = {
        data: new Uint8Array(size),
        encoding: "pcm_s16le",
        sampleRate: 16000,
        channels: 1,
      };
      for (let i = 1; i <= 4; i++) {
        expect(
          (await streamAudio(client, collect(hw, sid, i, undefined, { chunkAudio: audio }))).code,
        ).toBeUndefined();
      }
      const over = await streamAudio(client, collect(hw, sid, 5, "text", { chunkAudio: audio }));
      expectExhausted(over, "max_audio_bytes_per_session");
      const r = await streamAudio(client, commit(hw, sid, { prompt: "said" }));
      expect(replyText(r)).toBe("said");
    });

    it("screenshot size", async () => {
      const t = target();
      const client = clientFor(t);
      const hw = newDevice();
      const sid = newSession();
      const r = await streamAudio(
        client,
        collect(hw, sid, 1, "look", { screenshot: "A".repeat(t.limits.maxScreenshotBytes + 4) }),
      );
      expectExhausted(r, "max_screenshot_bytes");
    });

    it("open sessions per hardware_id", async () => {
      const t = target();
      const client = clientFor(t);
      const hw = newDevice();
      const sessions = Array.from({ length: t.limits.maxOpenSessionsPerDevice }, newSession);
      for (const sid of sessions) {
        expect((await streamAudio(client, collect(hw, sid, 1, sid))).code).toBeUndefined();
      }
      const over = await streamAudio(client, collect(hw, newSession(), 1, "ninth"));
      expectExhausted(over, "max_open_sessions_per_device");
      // Chunks of open sessions still land, and committing one frees a place.
      expect(
        (await streamAudio(client, collect(hw, sessions[0] as string, 2, "!"))).code,
      ).toBeUndefined();
      const r = await streamAudio(client, commit(hw, sessions[0] as string));
      expect(replyText(r)).toBe(`${sessions[0]}!`);
      expect(
        (await streamAudio(client, collect(hw, newSession(), 1, "now fits"))).code,
      ).toBeUndefined();
    });

    it("concurrent replies: a rejected COMMIT leaves its buffer for the retry", async () => {
      const t = target();
      const client = clientFor(t);
      const hw = newDevice();
      const sid = newSession();
      await streamAudio(client, collect(hw, sid, 1, "retry me"));
      // Fill every reply slot with long replies of the same device (on Workers the slots are
      // per device object; elsewhere per instance: one device fills them either way, and
      // calls alternating over N instances fill all of theirs with N times as many).
      const slots = t.limits.maxConcurrentReplies * (caps.instances ?? 1);
      const devices = Array.from({ length: slots }, () => hw);
      let started = 0;
      let allStarted!: () => void;
      const full = new Promise<void>((r) => {
        allStarted = r;
      });
      const running = devices.map((d) => {
        let seen = false;
        return streamAudio(client, commit(d, newSession(), { prompt: longText(300) }), {
          onFrame: (f) => {
            if (f.case !== "textChunk") return;
            if (!seen && ++started === devices.length) allStarted();
            seen = true;
          },
        });
      });
      await full;
      const rejected = await streamAudio(client, commit(hw, sid));
      expectExhausted(rejected, "max_concurrent_replies");
      await client.interruptSession({ hardwareId: hw });
      for (const r of await Promise.all(running)) expect(r.code).toBe(Code.Canceled);
      const retry = await streamAudio(client, commit(hw, sid));
      expect(retry.code).toBeUndefined();
      expect(replyText(retry)).toBe("retry me");
    }, 30_000);

    it("a COMMIT over a limit is rejected and leaves the buffer intact", async () => {
      const t = target();
      const client = clientFor(t);
      const hw = newDevice();
      const sid = newSession();
      await streamAudio(client, collect(hw, sid, 1, "keep this"));
      const big = "y".repeat(t.limits.maxChunkTextBytes + 1);
      const r = await streamAudio(client, commit(hw, sid, { prompt: big }));
      expectExhausted(r, "max_chunk_text_bytes");
      const retry = await streamAudio(client, commit(hw, sid, { prompt: " please" }));
      expect(replyText(retry)).toBe("keep this please");
    });

    it("request message size", async () => {
      const t = target();
      const client = clientFor(t);
      const hw = newDevice();
      const sid = newSession();
      await streamAudio(client, collect(hw, sid, 1, "small "));
      const audio = {
        data: new Uint8Array(t.limits.maxRequestBytes + 1024),
        encoding: "pcm_s16le",
        sampleRate: 16000,
        channels: 1,
      };
      const r = await streamAudio(client, collect(hw, sid, 2, undefined, { chunkAudio: audio }));
      expect(r.code).toBe(Code.ResourceExhausted);
      let done = await streamAudio(client, commit(hw, sid));
      // A transport failure has no frames (a server error has its error_message frame).
      if (
        caps.oversizeRequestResetsConnection &&
        done.code !== undefined &&
        done.frames.length === 0
      ) {
        // The refused upload's connection was closed under the pooled client: one retry.
        done = await streamAudio(client, commit(hw, sid));
      }
      expect(replyText(done)).toBe("small ");
    });
  });
}
