// A git revision's source beside this one, for A/B benches that load or run two trees in one
// run (store-ab.ts, redis-ab.ts).
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const REPO = resolve(import.meta.dirname, "..");

/**
 * The tree of `rev`: this working tree for ".", else its src and bench/servers extracted to a
 * temporary directory that links this repo's node_modules (so both sides run the same
 * dependencies: a change of a dependency is not what these benches compare).
 */
export function treeOf(rev: string): string {
  if (rev === ".") return REPO;
  const dir = mkdtempSync(join(tmpdir(), "ptt-ab-"));
  const paths = ["src", "package.json"];
  const has = (p: string) =>
    execFileSync("git", ["-C", REPO, "ls-tree", "--name-only", rev, p], { encoding: "utf8" }) !==
    "";
  if (has("bench/servers")) paths.push("bench/servers");
  const tar = execFileSync("git", ["-C", REPO, "archive", rev, ...paths]);
  execFileSync("tar", ["-x", "-C", dir], { input: tar });
  symlinkSync(join(REPO, "node_modules"), join(dir, "node_modules"));
  // Removed when the bench exits (the link only: rmSync does not follow it).
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
