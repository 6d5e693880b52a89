import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { promisify } from "node:util";
import { build } from "esbuild";
import { chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// The package as its users get it: `npm pack`, installed into a scratch project with npm
// itself (offline, from the npm cache `npm ci` filled, with a lockfile made from ours: fast,
// and no registry needed), then the installed `ptt-edge` bin serves, a plain .mjs client on
// Node 20 (ws passed in) talks to it, and an esbuild browser bundle of `ptt-edge/client` runs
// in Debian's Chromium. Packs the dist/ that `npm run build` wrote (CI builds first).
const ROOT = resolve(import.meta.dirname, "../..");
const CHROMIUM = "/usr/bin/chromium";
const TIMEOUT_MS = 120_000;
const run = promisify(execFile);

/** What `ptt-edge/client` may bundle: the client, its generated messages, protobuf-es, connect. */
const CLIENT_INPUTS =
  /^node_modules\/(ptt-edge\/dist\/(bridge\/client|gen)\/|@bufbuild\/protobuf\/|@connectrpc\/connect\/)/;

/** A source file newer than dist/ means the tarball would not hold this code. */
function staleBuild(): string | undefined {
  const built = join(ROOT, "dist/bin/node.js");
  if (!existsSync(built)) return "dist/ is missing";
  const builtAt = statSync(built).mtimeMs;
  const walk = (dir: string): string | undefined => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        const found = walk(path);
        if (found) return found;
      } else if (path.endsWith(".ts") && statSync(path).mtimeMs > builtAt) {
        return `${relative(ROOT, path)} is newer than dist/`;
      }
    }
    return undefined;
  };
  return walk(join(ROOT, "src"));
}

interface LockEntry {
  version: string;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  optionalDependencies?: Record<string, string>;
}

/** A lockfile for `dir`: the tarball plus `extra`, each dependency pinned as our lockfile pins it. */
async function scratchLock(
  tarball: { filename: string; integrity: string },
  manifest: {
    version: string;
    dependencies?: Record<string, string>;
    bin?: Record<string, string>;
    engines?: Record<string, string>;
  },
  extra: Record<string, string>,
) {
  const ours = JSON.parse(await readFile(join(ROOT, "package-lock.json"), "utf8")) as {
    packages: Record<string, LockEntry>;
  };
  const packages: Record<string, unknown> = {
    "": { name: "scratch", dependencies: { "ptt-edge": `file:${tarball.filename}`, ...extra } },
    "node_modules/ptt-edge": {
      version: manifest.version,
      resolved: `file:${tarball.filename}`,
      integrity: tarball.integrity,
      dependencies: manifest.dependencies,
      bin: manifest.bin,
      engines: manifest.engines,
    },
  };
  const queue = [...Object.keys(manifest.dependencies ?? {}), ...Object.keys(extra)];
  for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
    const key = `node_modules/${name}`;
    if (packages[key]) continue;
    const entry = ours.packages[key];
    if (!entry)
      throw new Error(`${name} is not in package-lock.json: the scratch install needs it`);
    packages[key] = entry;
    const required = Object.keys(entry.peerDependencies ?? {}).filter(
      (peer) => !entry.peerDependenciesMeta?.[peer]?.optional,
    );
    queue.push(...Object.keys(entry.dependencies ?? {}), ...required);
  }
  return { name: "scratch", lockfileVersion: 3, requires: true, packages };
}

const NODE_CLIENT = `
import { Code, connect } from "ptt-edge/client";
import { WebSocket } from "ws";

const ptt = connect(process.argv[2], { hardwareId: "node-tarball", WebSocket });
const hold = ptt.hold();
hold.text("hello from node.");
const reply = await hold.release({ signal: AbortSignal.timeout(30_000) });
let text = "";
for await (const part of reply) if (part.kind === "text") text += part.text;
const { error } = await reply.done;

// A dead server: the call ends unavailable instead of hanging.
const dead = connect("ws://127.0.0.1:9/v1/bridge", { hardwareId: "node-tarball", WebSocket, connectTimeoutMs: 5000 });
const refused = await dead.hold().release().then(
  (r) => r.done.then(({ error }) => (error ? Code[error.code] : "answered")),
  (err) => Code[err.code],
);
dead.close();
ptt.close();
console.log(JSON.stringify({ text, error: error?.message ?? null, refused }));
`;

const BROWSER_ENTRY = `
import { connect } from "ptt-edge/client";

globalThis.holdOnce = async (url) => {
  const ptt = connect(url, { hardwareId: "browser-tarball" });
  const hold = ptt.hold();
  hold.text("hello from a bundle.");
  const reply = await hold.release();
  let text = "";
  for await (const part of reply) if (part.kind === "text") text += part.text;
  const { error } = await reply.done;
  ptt.close();
  return { text, error: error ? error.message : null };
};
`;

const missingChromium = !existsSync(CHROMIUM);

describe("the packed tarball, installed into a scratch project", () => {
  let dir: string;
  let server: ChildProcess | undefined;
  let url: string;
  let output = "";

  beforeAll(async () => {
    const stale = staleBuild();
    if (stale) throw new Error(`${stale}: run \`npm run build\` first (CI does)`);
    dir = await mkdtemp(join(tmpdir(), "ptt-edge-tarball-"));
    // The build is dist/ as it stands (checked above); prepare would rebuild it under the
    // feet of other test files.
    const { stdout } = await run(
      "npm",
      ["pack", "--ignore-scripts", "--json", "--pack-destination", dir],
      { cwd: ROOT },
    );
    const [packed] = JSON.parse(stdout) as {
      filename: string;
      integrity: string;
      entryCount: number;
      size: number;
      files: { path: string }[];
    }[];
    if (!packed) throw new Error(`npm pack printed nothing: ${stdout}`);
    console.info(
      `tarball: ${packed.entryCount} files, ${packed.size} bytes packed (${packed.filename})`,
    );
    const paths = packed.files.map((f) => f.path);
    expect(paths.filter((p) => /^(test|bench|src|scripts|\.ci)\//.test(p))).toEqual([]);
    expect(paths).toContain("LICENSE");
    expect(paths).toContain("dist/bridge/client/index.d.ts");

    const project = join(dir, "project");
    await mkdir(project);
    const manifest = JSON.parse(
      (await run("tar", ["-xzOf", join(dir, packed.filename), "package/package.json"])).stdout,
    );
    const extra = { ws: manifest.dependencies.ws };
    await writeFile(
      join(project, "package.json"),
      JSON.stringify({
        name: "scratch",
        private: true,
        type: "module",
        dependencies: { "ptt-edge": `file:../${packed.filename}`, ...extra },
      }),
    );
    const lock = await scratchLock(
      { ...packed, filename: `../${packed.filename}` },
      manifest,
      extra,
    );
    await writeFile(join(project, "package-lock.json"), JSON.stringify(lock, null, 2));
    const t0 = Date.now();
    await run("npm", ["ci", "--offline", "--no-audit", "--no-fund"], {
      cwd: project,
      env: { ...process.env, npm_config_update_notifier: "false" },
    });
    console.info(`npm ci --offline of the tarball: ${Date.now() - t0} ms`);
    await writeFile(join(project, "client.mjs"), NODE_CLIENT);
    await writeFile(join(project, "browser.mjs"), BROWSER_ENTRY);

    server = spawn(join(project, "node_modules/.bin/ptt-edge"), [], {
      cwd: project,
      env: { ...process.env, PORT: "0", HOST: "127.0.0.1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    url = await new Promise<string>((done, fail) => {
      const timer = setTimeout(() => fail(new Error(`no start-up line:\n${output}`)), 30_000);
      server?.stdout?.on("data", (d) => {
        output += d;
      });
      server?.stderr?.on("data", (d) => {
        output += d;
        const found = /listening on (http:\/\/\S+)/.exec(output)?.[1];
        if (found) {
          clearTimeout(timer);
          done(found);
        }
      });
      server?.once("error", fail);
      server?.once("exit", (code) => fail(new Error(`the bin exited ${code}:\n${output}`)));
    });
  }, TIMEOUT_MS);

  afterAll(async () => {
    if (server && server.exitCode === null) {
      const exited = new Promise((done) => server?.once("exit", done));
      server.kill("SIGTERM");
      await exited;
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  }, TIMEOUT_MS);

  it(
    "a plain .mjs client on Node with ws gets its reply; a dead server is unavailable",
    async () => {
      const wsUrl = `${url.replace(/^http/, "ws")}/v1/bridge`;
      const { stdout } = await run("node", ["client.mjs", wsUrl], {
        cwd: join(dir, "project"),
        timeout: 60_000,
      });
      expect(JSON.parse(stdout)).toEqual({
        text: "hello from node.",
        error: null,
        refused: "Unavailable",
      });
    },
    TIMEOUT_MS,
  );

  it.skipIf(missingChromium && !process.env.CI)(
    "an esbuild browser bundle holds only the client and gets its reply in Chromium",
    async () => {
      const project = join(dir, "project");
      const bundle = await build({
        absWorkingDir: project,
        entryPoints: ["browser.mjs"],
        bundle: true,
        minify: true,
        platform: "browser",
        format: "iife",
        write: false,
        metafile: true,
        logLevel: "silent",
      });
      const code = bundle.outputFiles[0]?.text ?? "";
      const inputs = Object.keys(bundle.metafile.inputs).filter((p) => p !== "browser.mjs");
      expect(inputs.filter((p) => !CLIENT_INPUTS.test(p))).toEqual([]);
      expect(inputs.some((p) => p.includes("ptt-edge/dist/bridge/client/"))).toBe(true);
      console.info(`browser bundle of ptt-edge/client: ${code.length} bytes minified`);

      const browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
      });
      try {
        // A page of the server's own origin, as served by it (Chromium lets only a page
        // from a local address reach a loopback socket), with the bundle added to it.
        const context = await browser.newContext({ bypassCSP: true });
        const page = await context.newPage();
        const errors: string[] = [];
        page.on("pageerror", (err) => errors.push(err.message));
        await page.goto(`${url}/healthz`);
        await page.addScriptTag({ content: code });
        const wsUrl = `${url.replace(/^http/, "ws")}/v1/bridge`;
        const result = await page.evaluate(
          (u) => (globalThis as unknown as { holdOnce(u: string): Promise<unknown> }).holdOnce(u),
          wsUrl,
        );
        expect(errors).toEqual([]);
        expect(result).toEqual({ text: "hello from a bundle.", error: null });
      } finally {
        await browser.close();
      }
    },
    TIMEOUT_MS,
  );
});
