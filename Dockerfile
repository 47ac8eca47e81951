# The demo server image (used by docker-compose.yml for the two-node topology).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p example-demo

# The page's only third-party module, the stock @rails/actioncable consumer, from npm.
FROM node:20-bookworm-slim AS assets
WORKDIR /js-client
COPY js-client/package.json js-client/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY js-client/public ./public

FROM debian:bookworm-slim
RUN useradd --system --create-home app && mkdir /data && chown app /data
COPY --from=build /src/target/release/example-demo /usr/local/bin/example-demo
COPY --from=assets /js-client/public /app/js-client/public
COPY --from=assets /js-client/node_modules/@rails/actioncable /app/js-client/node_modules/@rails/actioncable
# The page's @anycable/web mode (?client=anycable) and what it imports.
COPY --from=assets /js-client/node_modules/@anycable /app/js-client/node_modules/@anycable
COPY --from=assets /js-client/node_modules/nanoevents /app/js-client/node_modules/nanoevents
ENV BIND=0.0.0.0 PORT=3000 DEMO_DATABASE=/data/demo.sqlite3 DEMO_ASSETS=/app/js-client
EXPOSE 3000
USER app
CMD ["example-demo"]
