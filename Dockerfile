# The danmaku container image for users: a multi-stage build, a slim non-root runtime.
#
#   docker build -t danmaku:0.1.0 .
#
# The runtime needs nothing but glibc and the system CA bundle (danmaku speaks plain
# HTTP/WebSocket behind a proxy; TLS to Redis is rustls, compiled in, and `rediss://` without
# DANMAKU_REDIS_CA_FILE trusts /etc/ssl/certs), runs as uid 10001 and writes nothing to its
# root filesystem, so it runs with readOnlyRootFilesystem. There is no HEALTHCHECK: on Kubernetes
# the probes on /livez and /readyz do that job (charts/danmaku).
#
# (On a machine that cannot pull base images, scripts/image builds the same runtime
# FROM scratch out of a host build; the tests use that.)

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, in their own layer: a change to src/ does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && cargo build --release --locked --bin danmaku \
 && rm -rf src target/release/.fingerprint/danmaku-* target/release/deps/danmaku-* \
           target/release/deps/libdanmaku-* target/release/danmaku
COPY src ./src
# The page and the client library it imports are compiled in (include_str!).
COPY web ./web
COPY clients/js/src ./clients/js/src
RUN cargo build --release --locked --bin danmaku \
 && install -D -m 0755 target/release/danmaku /out/danmaku

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 danmaku \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin danmaku
COPY --from=build /out/danmaku /usr/local/bin/danmaku
USER 10001:10001
ENV DANMAKU_LISTEN=0.0.0.0:8080
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/danmaku"]
