# The platform image: broker, ingest, dashboard API (and the simulator CLI, run as its own service).
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
# tsx is a runtime dependency: the platform runs from its TypeScript sources.
RUN npm ci --omit=dev --no-audit --no-fund
COPY . .
RUN mkdir -p /app/data && chown -R node:node /app/data
USER node
ENV DATA_DIR=/app/data
VOLUME ["/app/data"]
EXPOSE 1883 8080
# node itself, not `npm start`: npm's prestart would run `npm ci` as this unprivileged user whenever the
# lock file looks newer than node_modules, and the platform gets SIGTERM directly for a graceful stop.
CMD ["node", "--import", "tsx", "platform/main.ts"]
