import { collectCases } from "./collect.cases.js";
import { commitCases } from "./commit.cases.js";
import { interruptCases } from "./interrupt.cases.js";
import { limitCases } from "./limits.cases.js";
import { resumeCases } from "./resume.cases.js";
import type { Capabilities, Target } from "./target.js";
import { ttlCases } from "./ttl.cases.js";
import { validationCases } from "./validation.cases.js";

/**
 * docs/protocol.md §2–§5 and §9 as tests, against any server reachable through `target()`
 * (resolved when tests run). `caps` is known when tests are collected: skips come from it.
 */
export function contractSuite(caps: Capabilities, target: () => Target): void {
  validationCases(target);
  collectCases(target);
  commitCases(caps, target);
  interruptCases(target);
  limitCases(caps, target);
  ttlCases(caps, target);
  resumeCases(caps, target);
}
