import { configDefaults, defineConfig } from "vitest/config";

// The main run (Node). test/workers runs inside workerd: `npm run test:workers`
// (vitest.workers.config.ts).
export default defineConfig({
  test: {
    exclude: [...configDefaults.exclude, "test/workers/**"],
    // CI machines are small and shared, and many tests drive real processes (Bun, Deno,
    // workerd, Chromium, Python) over loopback: a test failing twice fails the run, and a
    // retried one is reported as such, so flakes stay visible without sinking a run.
    retry: process.env.CI ? 1 : 0,
  },
});
