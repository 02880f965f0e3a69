# syntax=docker/dockerfile:1
# JivaChat server image: `docker build -t jivachat-server .`
#
# Two stages: the release binary is built in the Rust image, then copied alone into a slim
# Debian with CA certificates (for HTTPS to DynamoDB, the copilot and AppSync), run as a
# non-root user. Configuration is by environment (see `jivachat-server --help`); the embedded
# SQLite store lives in the /var/lib/jivachat volume.

FROM rust:1-slim-bookworm AS builder
# make: jemalloc (the server's allocator, built from source by tikv-jemalloc-sys).
RUN apt-get update \
 && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The cache mounts keep the registry and target dir between builds (BuildKit); the binary is
# copied out of the cached target dir, which is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p jivachat-server \
 && cp target/release/jivachat-server /usr/local/bin/jivachat-server

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --user-group --uid 10001 --home-dir /var/lib/jivachat --create-home \
        --shell /usr/sbin/nologin jivachat
COPY --from=builder /usr/local/bin/jivachat-server /usr/local/bin/jivachat-server

ENV JIVA_LISTEN=0.0.0.0:3030 \
    JIVA_DATA_DIR=/var/lib/jivachat
VOLUME ["/var/lib/jivachat"]
WORKDIR /var/lib/jivachat
USER jivachat
EXPOSE 3030
# The server stops on SIGTERM: sockets get 1001, copilot turns and notifications finish within
# the grace period (JIVA_SHUTDOWN_GRACE_MS).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/jivachat-server"]
