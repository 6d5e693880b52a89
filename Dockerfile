# ptt-edge on Node, as a container: see docs/deploy.md (Docker could not run on the machines
# this project is developed and tested on; the image is built by users, not by CI).
#
#   docker build -t ptt-edge .
#   docker run --rm -p 8080:8080 --stop-timeout 15 ptt-edge
FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Runtime dependencies only: no bun, deno, wrangler or test tools in the image.
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY src ./src
USER node
EXPOSE 8080
# Node itself is PID 1 (no npm in between), so SIGTERM reaches the server's graceful shutdown:
# replies get PTT_GRACE_MS (10 s) to finish; docker stop's own timeout must be longer.
CMD ["node", "--import", "tsx", "src/runtimes/node/main.ts"]
