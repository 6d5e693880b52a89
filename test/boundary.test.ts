import { readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";

// STYLE.md item 10: src/core never reaches for a runtime. It may import only the
// packages below, relative paths that stay in src/core, and the generated code.
const ROOT = path.resolve(import.meta.dirname, "..");
const CORE = path.join(ROOT, "src", "core");
const GEN = path.join(ROOT, "src", "gen");
const ALLOWED_PACKAGES = ["@bufbuild/protobuf", "@connectrpc/connect", "hono"];
const RUNTIME_GLOBALS = new Set(["process", "Deno", "Bun"]);

interface Violation {
  file: string;
  line: number;
  what: string;
}

/** Every boundary violation in one source file. `file` is an absolute path. */
function checkSource(file: string, source: string): Violation[] {
  const tokens = tokenize(source);
  const out: Violation[] = [];
  const report = (tok: Token, what: string) => {
    out.push({ file: path.relative(ROOT, file), line: tok.line, what });
  };
  const checkSpecifier = (tok: Token) => {
    const why = specifierProblem(file, tok.value);
    if (why) report(tok, `"${tok.value}": ${why}`);
  };
  const at = (i: number): Token | undefined => tokens[i];
  const isPunct = (i: number, p: string) => at(i)?.kind === "punct" && at(i)?.value === p;
  const isWord = (i: number, w: string) => at(i)?.kind === "word" && at(i)?.value === w;
  const isMemberName = (i: number) => isPunct(i - 1, ".") || isPunct(i - 1, "?.");

  for (let i = 0; i < tokens.length; i++) {
    const tok = tokens[i] as Token;
    if (tok.kind !== "word" || isMemberName(i)) continue;
    if (tok.value === "import") {
      if (isPunct(i + 1, ".")) continue; // import.meta
      if (isPunct(i + 1, "(")) {
        const arg = at(i + 2);
        if (arg?.kind === "string") checkSpecifier(arg);
        else report(tok, "dynamic import() of a computed specifier");
        continue;
      }
      if (at(i + 1)?.kind === "string") {
        checkSpecifier(at(i + 1) as Token); // import "x";
        continue;
      }
      // import a, { b } from "x" / import type X from "x" / import x = require("x")
      for (let j = i + 1; j < tokens.length && !isPunct(j, ";"); j++) {
        if (isWord(j, "from") && at(j + 1)?.kind === "string") {
          checkSpecifier(at(j + 1) as Token);
          break;
        }
        if (isWord(j, "require")) break; // reported below
        if (isWord(j, "import") || isWord(j, "export")) break;
      }
    } else if (tok.value === "export") {
      // export * from "x" / export * as n from "x" / export { a } from "x" / export type { A } from "x"
      let j = i + 1;
      if (isWord(j, "type")) j++;
      if (isPunct(j, "*")) {
        j++;
        if (isWord(j, "as")) j += 2;
      } else if (isPunct(j, "{")) {
        while (j < tokens.length && !isPunct(j, "}")) j++;
        j++;
      } else {
        continue; // export const/function/class/default: not a re-export
      }
      if (isWord(j, "from") && at(j + 1)?.kind === "string") checkSpecifier(at(j + 1) as Token);
    } else if (tok.value === "require" && isPunct(i + 1, "(")) {
      const arg = at(i + 2);
      if (arg?.kind === "string") checkSpecifier(arg);
      report(tok, "require() in src/core (ESM only)");
    } else if (RUNTIME_GLOBALS.has(tok.value)) {
      if (isPunct(i + 1, ".") || isPunct(i + 1, "?.") || isPunct(i + 1, "[")) {
        report(tok, `runtime global "${tok.value}${at(i + 1)?.value}" (inject it instead)`);
      }
    } else if (tok.value === "globalThis") {
      // globalThis.process / globalThis["Deno"]
      const next = at(i + 2);
      const viaDot = isPunct(i + 1, ".") && next?.kind === "word";
      const viaIndex = isPunct(i + 1, "[") && next?.kind === "string";
      if ((viaDot || viaIndex) && next && RUNTIME_GLOBALS.has(next.value)) {
        report(tok, `runtime global "globalThis.${next.value}" (inject it instead)`);
      }
    }
  }
  return out;
}

/** Why an import specifier is not allowed from `file`; undefined when it is. */
function specifierProblem(file: string, spec: string): string | undefined {
  if (spec.startsWith("node:")) return "node: built-in module";
  if (spec.startsWith("./") || spec.startsWith("../")) {
    const target = path.resolve(path.dirname(file), spec);
    if (isInside(target, CORE) || isInside(target, GEN)) return undefined;
    return `relative path leaves src/core (to ${path.relative(ROOT, target)}); only src/core and src/gen`;
  }
  if (ALLOWED_PACKAGES.some((p) => spec === p || spec.startsWith(`${p}/`))) return undefined;
  return `package not allowed in src/core (only ${ALLOWED_PACKAGES.join(", ")})`;
}

function isInside(target: string, dir: string): boolean {
  const rel = path.relative(dir, target);
  return rel !== "" && !rel.startsWith("..") && !path.isAbsolute(rel);
}

// --- A small TypeScript lexer: enough to tell code from comments, strings and regexes. ---

interface Token {
  kind: "word" | "string" | "punct" | "number" | "regex" | "template";
  /** For strings: the unquoted value. */
  value: string;
  line: number;
}

const PUNCTS = ["?.", "=>", "...", "(", ")", "[", "]", "{", "}", ";", ",", ".", "*"];
// After these a "/" starts a regex, not a division.
const REGEX_AFTER_WORDS = new Set([
  "return",
  "typeof",
  "instanceof",
  "in",
  "of",
  "new",
  "delete",
  "void",
  "throw",
  "case",
  "do",
  "else",
  "yield",
  "await",
]);

function tokenize(src: string): Token[] {
  const tokens: Token[] = [];
  // Open template literals / braces inside their ${ }: tells a "}" that resumes a template.
  const braces: ("code" | "template")[] = [];
  let i = 0;
  let line = 1;
  const push = (kind: Token["kind"], value: string, startLine: number) => {
    tokens.push({ kind, value, line: startLine });
  };
  const regexAllowed = () => {
    const prev = tokens.at(-1);
    if (!prev) return true;
    if (prev.kind === "word") return REGEX_AFTER_WORDS.has(prev.value);
    if (prev.kind === "punct") return prev.value !== ")" && prev.value !== "]";
    return false;
  };
  /** Reads a template literal body from i (just after ` or }) up to ` or ${. */
  const templateBody = () => {
    while (i < src.length) {
      const c = src[i];
      if (c === "\\") {
        i += 2;
        continue;
      }
      if (c === "\n") line++;
      if (c === "`") {
        i++;
        return;
      }
      if (c === "$" && src[i + 1] === "{") {
        i += 2;
        braces.push("template");
        return;
      }
      i++;
    }
  };

  while (i < src.length) {
    const c = src[i] as string;
    const start = line;
    if (c === "\n") {
      line++;
      i++;
    } else if (/\s/.test(c)) {
      i++;
    } else if (c === "/" && src[i + 1] === "/") {
      while (i < src.length && src[i] !== "\n") i++;
    } else if (c === "/" && src[i + 1] === "*") {
      const end = src.indexOf("*/", i + 2);
      const stop = end < 0 ? src.length : end + 2;
      for (let k = i; k < stop; k++) if (src[k] === "\n") line++;
      i = stop;
    } else if (c === '"' || c === "'") {
      let value = "";
      i++;
      while (i < src.length && src[i] !== c && src[i] !== "\n") {
        if (src[i] === "\\") {
          value += src[i + 1] ?? "";
          i += 2;
        } else {
          value += src[i];
          i++;
        }
      }
      i++;
      push("string", value, start);
    } else if (c === "`") {
      i++;
      templateBody();
      push("template", "`", start);
    } else if (c === "/" && regexAllowed()) {
      i++;
      let inClass = false;
      while (i < src.length && src[i] !== "\n") {
        const r = src[i];
        if (r === "\\") {
          i += 2;
          continue;
        }
        if (r === "[") inClass = true;
        else if (r === "]") inClass = false;
        else if (r === "/" && !inClass) break;
        i++;
      }
      i++;
      while (i < src.length && /[a-z]/i.test(src[i] as string)) i++;
      push("regex", "/", start);
    } else if (/[A-Za-z_$]/.test(c)) {
      const m = /^[A-Za-z0-9_$]+/.exec(src.slice(i, i + 200)) as RegExpExecArray;
      push("word", m[0], start);
      i += m[0].length;
    } else if (/[0-9]/.test(c)) {
      const m = /^[0-9A-Za-z_.]+/.exec(src.slice(i, i + 200)) as RegExpExecArray;
      push("number", m[0], start);
      i += m[0].length;
    } else if (c === "{") {
      braces.push("code");
      push("punct", "{", start);
      i++;
    } else if (c === "}") {
      i++;
      if (braces.pop() === "template") templateBody();
      else push("punct", "}", start);
    } else {
      const p = PUNCTS.find((q) => src.startsWith(q, i)) ?? c;
      push("punct", p, start);
      i += p.length;
    }
  }
  return tokens;
}

function coreFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return coreFiles(full);
    return e.isFile() && e.name.endsWith(".ts") ? [full] : [];
  });
}

const format = (v: Violation) => `${v.file}:${v.line}: ${v.what}`;

describe("src/core boundary (STYLE.md item 10)", () => {
  const files = coreFiles(CORE);

  it("finds the core sources", () => {
    expect(files.length).toBeGreaterThan(10);
    expect(files).toContain(path.join(CORE, "stream-audio.ts"));
  });

  it("imports only @bufbuild/protobuf, @connectrpc/connect, hono, src/core and src/gen", () => {
    const violations = files.flatMap((f) => checkSource(f, readFileSync(f, "utf8")));
    expect(violations.map(format)).toEqual([]);
  });

  it("sees the imports that are there (the scanner is not blind)", () => {
    // Checked as if it lived outside src/core, every file's relative imports must be reported.
    const elsewhere = path.join(ROOT, "elsewhere", "deeper");
    for (const f of files) {
      const source = readFileSync(f, "utf8");
      const relative = source.match(/from "\.\.?\//g)?.length ?? 0;
      const moved = path.join(elsewhere, path.relative(CORE, f));
      const found = checkSource(moved, source).filter((v) => v.what.includes("relative path"));
      expect(found.length, path.relative(ROOT, f)).toBe(relative);
    }
  });
});

describe("boundary checker self-check", () => {
  const file = path.join(CORE, "synthetic.ts");

  it("reports file, line and specifier of every kind of violation", () => {
    const bad = [
      'import { readFileSync } from "node:fs";', // 1
      'import type { Server } from "node:http";', // 2
      'import * as ws from "ws";', // 3
      'import "@connectrpc/connect-node";', // 4
      'export { serve } from "@hono/node-server";', // 5
      'export * from "../runtimes/node/server.js";', // 6
      'export type { X } from "fs";', // 7
      'const m = await import("node:net");', // 8
      "const n = await import(name);", // 9
      "const port = process.env.PORT;", // 10
      'const d = Deno.env.get("X");', // 11
      "Bun.serve({});", // 12
      "const p = globalThis.process;", // 13
      'const r = require("events");', // 14
      "const q = process?.argv;", // 15
      "import {", // 16
      "  a,", // 17
      '} from "hono-extra";', // 18
    ].join("\n");
    const found = checkSource(file, bad).map(format);
    expect(found).toEqual([
      'src/core/synthetic.ts:1: "node:fs": node: built-in module',
      'src/core/synthetic.ts:2: "node:http": node: built-in module',
      'src/core/synthetic.ts:3: "ws": package not allowed in src/core (only @bufbuild/protobuf, @connectrpc/connect, hono)',
      'src/core/synthetic.ts:4: "@connectrpc/connect-node": package not allowed in src/core (only @bufbuild/protobuf, @connectrpc/connect, hono)',
      'src/core/synthetic.ts:5: "@hono/node-server": package not allowed in src/core (only @bufbuild/protobuf, @connectrpc/connect, hono)',
      'src/core/synthetic.ts:6: "../runtimes/node/server.js": relative path leaves src/core (to src/runtimes/node/server.js); only src/core and src/gen',
      'src/core/synthetic.ts:7: "fs": package not allowed in src/core (only @bufbuild/protobuf, @connectrpc/connect, hono)',
      'src/core/synthetic.ts:8: "node:net": node: built-in module',
      "src/core/synthetic.ts:9: dynamic import() of a computed specifier",
      'src/core/synthetic.ts:10: runtime global "process." (inject it instead)',
      'src/core/synthetic.ts:11: runtime global "Deno." (inject it instead)',
      'src/core/synthetic.ts:12: runtime global "Bun." (inject it instead)',
      'src/core/synthetic.ts:13: runtime global "globalThis.process" (inject it instead)',
      'src/core/synthetic.ts:14: "events": package not allowed in src/core (only @bufbuild/protobuf, @connectrpc/connect, hono)',
      "src/core/synthetic.ts:14: require() in src/core (ESM only)",
      'src/core/synthetic.ts:15: runtime global "process?." (inject it instead)',
      'src/core/synthetic.ts:18: "hono-extra": package not allowed in src/core (only @bufbuild/protobuf, @connectrpc/connect, hono)',
    ]);
  });

  it("accepts what core may use, and is not fooled by comments, strings and regexes", () => {
    const good = [
      'import { create } from "@bufbuild/protobuf";',
      'import type { GenFile } from "@bufbuild/protobuf/codegenv2";',
      'import { Code } from "@connectrpc/connect";',
      'import { universal } from "@connectrpc/connect/protocol";',
      'import { Hono } from "hono";',
      'import { HTTPException } from "hono/http-exception";',
      'import { StreamingService } from "../gen/streaming_pb.js";',
      'import { a } from "./a.js";',
      'import { b } from "./stores/b.js";',
      'export { c } from "./c.js";',
      'export type { D } from "../core/d.js";',
      '// import { readFileSync } from "node:fs"; process.env.X',
      '/* const x = require("fs"); Deno.env */',
      "const s = \"import x from 'node:fs'; process.exit(1)\";",
      // Nested template literals; "@{" stands for "${" (a literal "${" in a string trips Biome).
      "const t = `process.env: @{'Bun.serve'} and @{`Deno.@{1}`}`;".replaceAll("@{", "${"),
      "const re = /[\\s\\S]*?(?:[.!?]+[\"'”’)\\]]*(?:\\s+|$)|$)/gu;",
      'const half = 1 / 2; const other = "x" / 3; const u = import.meta.url;',
      "const o = { process: 1 }; o.process.x; options.Bun?.y;",
      "export const value = 1;",
      "export function f() { return /Deno./.test('Bun.x'); }",
    ].join("\n");
    expect(checkSource(file, good).map(format)).toEqual([]);
  });
});
