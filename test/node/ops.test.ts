import * as http2 from "node:http2";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createJsonLogger } from "../../src/core/json-logger.js";
import { StreamingService } from "../../src/gen/streaming_pb.js";
import { type NodeServer, startNodeServer } from "../../src/runtimes/node/server.js";
import {
  collect,
  commit,
  endMessage,
  newDevice,
  newSession,
  replyText,
  type StreamingClient,
  streamAudio,
} from "../contract/calls.js";

// docs/protocol.md §7 over real sockets: /healthz, /readyz, /metrics on the RPC port, over
// HTTP/1.1 and h2c, and the metrics moving with real calls.

interface Reply {
  status: number;
  contentType: string;
  body: string;
}

async function h1(url: string, init?: RequestInit): Promise<Reply> {
  const res = await fetch(url, init);
  return {
    status: res.status,
    contentType: res.headers.get("content-type") ?? "",
    body: await res.text(),
  };
}

/** One request over a cleartext HTTP/2 connection with prior knowledge (h2c). */
function h2(baseUrl: string, path: string, method = "GET"): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(baseUrl);
    session.once("error", reject);
    const req = session.request({ ":method": method, ":path": path });
    req.end();
    let status = 0;
    let contentType = "";
    let body = "";
    req.setEncoding("utf8");
    req.on("response", (headers) => {
      status = Number(headers[":status"]);
      contentType = String(headers["content-type"] ?? "");
    });
    req.on("data", (d: string) => {
      body += d;
    });
    req.once("error", reject);
    req.once("end", () => {
      session.close();
      resolve({ status, contentType, body });
    });
  });
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Scrape {
  samples: Sample[];
  types: Map<string, string>;
  /** Everything that is not valid Prometheus text format 0.0.4 or not prefixed ptt_. */
  problems: string[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: -?\d+)?$/;
const LABEL = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"$/;

/** Parses and checks Prometheus text: HELP and TYPE before each family's samples. */
function parseMetrics(text: string): Scrape {
  const samples: Sample[] = [];
  const helps = new Set<string>();
  const types = new Map<string, string>();
  const problems: string[] = [];
  if (!text.endsWith("\n")) problems.push("does not end with a newline");
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
    if (meta) {
      const [, kind, name = "", rest = ""] = meta;
      if (!METRIC_NAME.test(name)) problems.push(`bad metric name: ${line}`);
      if (!name.startsWith("ptt_")) problems.push(`not prefixed ptt_: ${line}`);
      if (kind === "HELP") {
        if (rest.trim() === "") problems.push(`empty HELP: ${line}`);
        helps.add(name);
      } else {
        if (!["counter", "gauge", "histogram", "summary", "untyped"].includes(rest)) {
          problems.push(`bad TYPE: ${line}`);
        }
        if (types.has(name)) problems.push(`TYPE twice: ${line}`);
        types.set(name, rest);
      }
      continue;
    }
    if (line.startsWith("#")) continue;
    const m = SAMPLE.exec(line);
    if (!m) {
      problems.push(`not a sample line: ${line}`);
      continue;
    }
    const [, name = "", labelText, valueText = ""] = m;
    const labels: Record<string, string> = {};
    for (const pair of labelText ? labelText.split(",") : []) {
      const lm = LABEL.exec(pair);
      if (lm) labels[lm[1] as string] = lm[2] as string;
      else problems.push(`bad label ${pair}: ${line}`);
    }
    const value = Number(valueText.replace(/^\+Inf$/, "Infinity"));
    if (Number.isNaN(value) && valueText !== "NaN") problems.push(`bad value: ${line}`);
    if (!name.startsWith("ptt_")) problems.push(`not prefixed ptt_: ${line}`);
    const base = name.replace(/_(bucket|sum|count)$/, "");
    const family = types.get(base) === "histogram" ? base : name;
    if (!helps.has(family)) problems.push(`sample before its HELP: ${line}`);
    if (!types.has(family)) problems.push(`sample before its TYPE: ${line}`);
    if (types.get(family) === "counter" && !family.endsWith("_total")) {
      problems.push(`counter not named _total: ${line}`);
    }
    samples.push({ name, labels, value });
  }
  // Histograms: cumulative buckets, +Inf bucket equal to _count.
  for (const [family, type] of types) {
    if (type !== "histogram") continue;
    const buckets = samples.filter((s) => s.name === `${family}_bucket`);
    const les = buckets.map((b) => Number((b.labels.le ?? "").replace("+Inf", "Infinity")));
    const counts = buckets.map((b) => b.value);
    const count = samples.find((s) => s.name === `${family}_count`)?.value;
    if (les.at(-1) !== Infinity) problems.push(`${family}: no +Inf bucket last`);
    if (les.some((le, i) => i > 0 && le <= (les[i - 1] as number))) {
      problems.push(`${family}: le not increasing`);
    }
    if (counts.some((c, i) => i > 0 && c < (counts[i - 1] as number))) {
      problems.push(`${family}: buckets not cumulative`);
    }
    if (counts.at(-1) !== count) problems.push(`${family}: +Inf bucket != _count`);
    if (!samples.some((s) => s.name === `${family}_sum`)) problems.push(`${family}: no _sum`);
  }
  return { samples, types, problems };
}

/** A sample's value; a labelled counter not yet incremented has no line and counts as 0. */
function sampleValue(scrape: Scrape, name: string, labels: Record<string, string> = {}): number {
  const want = Object.entries(labels);
  const s = scrape.samples.find(
    (x) => x.name === name && want.every(([k, v]) => x.labels[k] === v),
  );
  return s?.value ?? 0;
}

describe("node: health, readiness and metrics (docs/protocol.md §7)", () => {
  let server: NodeServer;
  let client: StreamingClient;
  const logLines: string[] = [];

  const scrape = async (): Promise<Scrape> => {
    const r = await h1(`${server.url}/metrics`);
    expect(r.status).toBe(200);
    const parsed = parseMetrics(r.body);
    expect(parsed.problems).toEqual([]);
    return parsed;
  };

  beforeAll(async () => {
    server = await startNodeServer({
      port: 0,
      graceMs: 0,
      config: {
        echoDelayMs: 20,
        logger: createJsonLogger((line) => logLines.push(line), "info"),
      },
    });
    client = createClient(StreamingService, createGrpcTransport({ baseUrl: server.url }));
  });
  afterAll(() => server?.close(0));

  for (const [proto, get] of [
    ["HTTP/1.1", (base: string, path: string) => h1(`${base}${path}`)],
    ["h2c", (base: string, path: string) => h2(base, path)],
  ] as const) {
    describe(proto, () => {
      it("/healthz is 200", async () => {
        const r = await get(server.url, "/healthz");
        expect(r.status).toBe(200);
        expect(r.body).toBe("ok\n");
      });

      it("/readyz is 200 while the store answers", async () => {
        const r = await get(server.url, "/readyz");
        expect(r.status).toBe(200);
        expect(r.body).toBe("ready\n");
      });

      it("/metrics is Prometheus text: every series ptt_, with HELP and TYPE", async () => {
        const r = await get(server.url, "/metrics");
        expect(r.status).toBe(200);
        expect(r.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
        const m = parseMetrics(r.body);
        expect(m.problems).toEqual([]);
        // The series docs/protocol.md §7 names.
        expect(Object.fromEntries(m.types)).toMatchObject({
          ptt_open_sessions: "gauge",
          ptt_buffered_bytes: "gauge",
          ptt_replies_in_flight: "gauge",
          ptt_chunks_total: "counter",
          ptt_commits_total: "counter",
          ptt_expirations_total: "counter",
          ptt_interrupts_total: "counter",
          ptt_commit_first_frame_ms: "histogram",
        });
      });

      it("unknown paths are 404", async () => {
        expect((await get(server.url, "/nope")).status).toBe(404);
        expect((await get(server.url, "/metrics/extra")).status).toBe(404);
      });

      it("/ is the demo page", async () => {
        const home = await get(server.url, "/");
        expect(home.status).toBe(200);
        expect(home.contentType).toMatch(/^text\/html/);
      });
    });
  }

  it("an unknown RPC path is 404, not a served method", async () => {
    const r = await h1(`${server.url}/streaming.StreamingService/NoSuchMethod`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(r.status).toBe(404);
    const r2 = await h2(server.url, "/no.such.Service/Call", "POST");
    expect(r2.status).toBe(404);
  });

  it("COLLECT and COMMIT move chunks, commits, open sessions, buffered bytes and first-frame latency", async () => {
    const hw = newDevice("ops");
    const sid = newSession();
    const m0 = await scrape();
    const accepted = { outcome: "accepted" };

    const c1 = await streamAudio(client, collect(hw, sid, 1, "hello "));
    expect(c1.code).toBeUndefined();
    const m1 = await scrape();
    expect(sampleValue(m1, "ptt_chunks_total", accepted)).toBe(
      sampleValue(m0, "ptt_chunks_total", accepted) + 1,
    );
    expect(sampleValue(m1, "ptt_open_sessions")).toBe(sampleValue(m0, "ptt_open_sessions") + 1);
    expect(sampleValue(m1, "ptt_buffered_bytes")).toBeGreaterThanOrEqual(
      sampleValue(m0, "ptt_buffered_bytes") + "hello ".length,
    );

    // A retried chunk is counted as duplicate, not accepted.
    const dup = await streamAudio(client, collect(hw, sid, 1, "hello "));
    expect(dup.code).toBeUndefined();
    const m2 = await scrape();
    expect(sampleValue(m2, "ptt_chunks_total", accepted)).toBe(
      sampleValue(m1, "ptt_chunks_total", accepted),
    );
    expect(sampleValue(m2, "ptt_chunks_total", { outcome: "duplicate" })).toBe(
      sampleValue(m1, "ptt_chunks_total", { outcome: "duplicate" }) + 1,
    );
    expect(sampleValue(m2, "ptt_open_sessions")).toBe(sampleValue(m1, "ptt_open_sessions"));

    const r = await streamAudio(client, commit(hw, sid));
    expect(r.code).toBeUndefined();
    expect(replyText(r)).toBe("hello ");
    expect(endMessage(r)).toBe("RESPONSE_COMPLETED");
    const m3 = await scrape();
    expect(sampleValue(m3, "ptt_commits_total", { outcome: "ok" })).toBe(
      sampleValue(m0, "ptt_commits_total", { outcome: "ok" }) + 1,
    );
    expect(sampleValue(m3, "ptt_commit_first_frame_ms_count")).toBe(
      sampleValue(m0, "ptt_commit_first_frame_ms_count") + 1,
    );
    expect(sampleValue(m3, "ptt_commit_first_frame_ms_sum")).toBeGreaterThan(
      sampleValue(m0, "ptt_commit_first_frame_ms_sum"),
    );
    expect(sampleValue(m3, "ptt_commit_first_frame_ms_bucket", { le: "+Inf" })).toBe(
      sampleValue(m0, "ptt_commit_first_frame_ms_bucket", { le: "+Inf" }) + 1,
    );
    expect(sampleValue(m3, "ptt_open_sessions")).toBe(sampleValue(m0, "ptt_open_sessions"));
    expect(sampleValue(m3, "ptt_buffered_bytes")).toBe(sampleValue(m0, "ptt_buffered_bytes"));
    expect(sampleValue(m3, "ptt_replies_in_flight")).toBe(0);

    // A second COMMIT of the same session is counted, not replied to.
    const again = await streamAudio(client, commit(hw, sid));
    expect(again.code).toBe(Code.AlreadyExists);
    const m4 = await scrape();
    expect(sampleValue(m4, "ptt_commits_total", { outcome: "ok" })).toBe(
      sampleValue(m3, "ptt_commits_total", { outcome: "ok" }),
    );
    expect(sampleValue(m4, "ptt_commits_total", { outcome: "already_committed" })).toBe(
      sampleValue(m3, "ptt_commits_total", { outcome: "already_committed" }) + 1,
    );

    // h2c serves the same numbers as HTTP/1.1.
    const viaH2 = await h2(server.url, "/metrics");
    expect(viaH2.status).toBe(200);
    expect(parseMetrics(viaH2.body).samples).toEqual(m4.samples);
  });

  it("ptt_replies_in_flight counts a reply while it streams", async () => {
    const hw = newDevice("ops");
    const sid = newSession();
    await streamAudio(client, collect(hw, sid, 1, "one. two. three. four. five. six."));
    let during: Scrape | undefined;
    let scraping: Promise<void> | undefined;
    const r = await streamAudio(client, commit(hw, sid), {
      onFrame: () => {
        scraping ??= scrape().then((s) => {
          during = s;
        });
      },
    });
    await scraping;
    expect(endMessage(r)).toBe("RESPONSE_COMPLETED");
    expect(during && sampleValue(during, "ptt_replies_in_flight")).toBe(1);
    expect(sampleValue(await scrape(), "ptt_replies_in_flight")).toBe(0);
  });

  it("logs structured JSON lines and never the transcript at info level", () => {
    expect(logLines.length).toBeGreaterThan(0);
    for (const line of logLines) {
      const entry = JSON.parse(line) as Record<string, unknown>;
      expect(entry).toHaveProperty("level");
      expect(entry).toHaveProperty("msg");
      expect(line).not.toContain("hello");
      expect(line).not.toContain("three.");
    }
  });
});
