# The demo server image (used by docker-compose.yml for the two-node topology).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p example-demo

FROM debian:bookworm-slim
RUN useradd --system --create-home app && mkdir /data && chown app /data
COPY --from=build /src/target/release/example-demo /usr/local/bin/example-demo
ENV BIND=0.0.0.0 PORT=3000 DEMO_DATABASE=/data/demo.sqlite3
EXPOSE 3000
USER app
CMD ["example-demo"]
