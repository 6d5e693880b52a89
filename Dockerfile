# ptt-edge on Node, as a container: see docs/deploy.md (Docker could not run on the machines
# this project is developed and tested on; the image is built by users, not by CI).
#
#   docker build -t ptt-edge .
#   docker run --rm -p 8080:8080 --stop-timeout 15 ptt-edge
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Install scripts stay off: nothing the build needs runs one (bun, deno, workerd are test tools).
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json tsconfig.workers.json tsconfig.build.workers.json ./
COPY src ./src
# JavaScript and .d.ts in dist/, then only the runtime dependencies.
RUN npm run build && npm prune --omit=dev --ignore-scripts

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
USER node
EXPOSE 8080
# Node itself is PID 1 (no npm in between), so SIGTERM reaches the server's graceful shutdown:
# replies get PTT_GRACE_MS (10 s) to finish; docker stop's own timeout must be longer.
CMD ["node", "dist/bin/node.js"]
