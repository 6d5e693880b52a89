/** The text of a reply's parts, in order (audio and action parts add nothing). */
export function partsText(parts: readonly { kind: string; text?: string }[]): string {
  return parts.map((p) => (p.kind === "text" ? (p.text ?? "") : "")).join("");
}
