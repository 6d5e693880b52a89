import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// STYLE.md item 12: the committed src/gen is exactly what `buf generate` makes from
// proto/ with the pinned buf and protoc-gen-es. Regenerates into a temp directory
// (buf's --output is prepended to each plugin's `out`) and compares byte for byte.
const ROOT = path.resolve(import.meta.dirname, "..");
const BIN = path.join(ROOT, "node_modules", ".bin");

/** The `out` directories of buf.gen.yaml's plugins, relative to the repo root. */
async function outDirs(): Promise<string[]> {
  const template = await readFile(path.join(ROOT, "buf.gen.yaml"), "utf8");
  const outs = [...template.matchAll(/^\s*-?\s*out:\s*["']?([^"'\s#]+)/gm)].map((m) => m[1]);
  return [...new Set(outs as string[])];
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(
    (err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return [];
      throw err;
    },
  );
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

describe("generated code (buf generate)", () => {
  let tmp: string;
  let outs: string[];

  beforeAll(async () => {
    tmp = await mkdtemp(path.join(tmpdir(), "ptt-codegen-"));
    outs = await outDirs();
    await promisify(execFile)(path.join(BIN, "buf"), ["generate", "--output", tmp], {
      cwd: ROOT,
      // protoc-gen-es is a local plugin: buf finds it on PATH, as `npm run generate` does.
      env: { ...process.env, PATH: `${BIN}${path.delimiter}${process.env.PATH ?? ""}` },
      timeout: 60_000,
    });
  }, 90_000);

  afterAll(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it("reads the plugin outputs from buf.gen.yaml", () => {
    expect(outs).toContain("src/gen");
  });

  it("writes nothing outside the template's out directories", async () => {
    const all = await listFiles(tmp);
    const stray = all.filter((f) => !outs.some((o) => f.startsWith(`${o}${path.sep}`)));
    expect(all.length).toBeGreaterThan(0);
    expect(stray).toEqual([]);
  });

  it("regenerates exactly the committed files, with no file missing or extra", async () => {
    for (const out of outs) {
      const fresh = await listFiles(path.join(tmp, out));
      const committed = await listFiles(path.join(ROOT, out));
      expect(committed, `files in ${out}`).toEqual(fresh);
      for (const f of fresh) {
        const [a, b] = await Promise.all([
          readFile(path.join(tmp, out, f)),
          readFile(path.join(ROOT, out, f)),
        ]);
        // Compared as text for a readable diff, then as bytes (line endings, BOM).
        expect(b.toString("utf8"), `${out}/${f} differs from buf generate`).toBe(
          a.toString("utf8"),
        );
        expect(Buffer.compare(a, b), `${out}/${f} bytes`).toBe(0);
      }
    }
  });
});
