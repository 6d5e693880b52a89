import { configDefaults, defineConfig } from "vitest/config";

// The main run (Node). test/workers runs inside workerd: `npm run test:workers`
// (vitest.workers.config.ts).
export default defineConfig({
  test: {
    exclude: [...configDefaults.exclude, "test/workers/**"],
  },
});
