# syntax=docker/dockerfile:1
# mcp-policy as an OCI image, the way Istio (WasmPlugin / istio-agent) and Envoy
# Gateway (EnvoyExtensionPolicy code.type: Image) pull a Wasm module: the final
# image is FROM scratch with exactly one layer holding /plugin.wasm.
#
#   docker build -t registry.example.com/mcp-policy:0.1.0 .
#   docker push registry.example.com/mcp-policy:0.1.0
#
# Other targets, built only when asked for:
#   docker build --target demo-server -t mcp-policy-demo-server .   # the demo MCP server (docker-compose.yaml)
#   docker build --target installer -t registry.example.com/mcp-policy-installer:0.1.0 .
#       # busybox + the module, for Kubernetes clusters without image volumes (deploy/README.md)
#   docker build --target ratelimit-service -t registry.example.com/mcp-ratelimit-service:0.2.0 .
#       # the rate-limit service for global limits (ratelimit-service/, deploy/fleet/)

# Sources and toolchain. rust:1 is the current stable; Cargo.toml's
# rust-version is the oldest that builds.
FROM rust:1-bookworm AS source
RUN rustup target add wasm32-wasip1
WORKDIR /src
COPY . .

# The module Envoy loads (what `make wasm` builds).
FROM source AS build
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --target wasm32-wasip1 --lib \
 && cp target/wasm32-wasip1/release/mcp_policy.wasm /plugin.wasm

# The demo MCP server (examples/demo_server), listening on all interfaces.
FROM source AS demo-server-build
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --features demo --bin demo_server \
 && cp target/release/demo_server /demo_server

FROM debian:bookworm-slim AS demo-server
COPY --from=demo-server-build /demo_server /usr/local/bin/demo_server
USER 65532:65532
EXPOSE 8081
ENTRYPOINT ["demo_server", "--host", "0.0.0.0", "--port", "8081"]

# An init container that copies the module into a shared volume:
# `cp /plugin.wasm <destination>` (destination given as the container's args).
FROM busybox:1.37 AS installer
COPY --from=build /plugin.wasm /plugin.wasm
ENTRYPOINT ["cp", "/plugin.wasm"]
CMD ["/wasm/plugin.wasm"]

# The rate-limit service for global limits (ratelimit-service/: its own crate).
FROM rust:1-bookworm AS ratelimit-service-build
WORKDIR /src
COPY ratelimit-service/ ratelimit-service/
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/ratelimit-service/target \
    cargo build --release --manifest-path ratelimit-service/Cargo.toml \
 && cp ratelimit-service/target/release/mcp-ratelimit-service /mcp-ratelimit-service

FROM debian:bookworm-slim AS ratelimit-service
COPY --from=ratelimit-service-build /mcp-ratelimit-service /usr/local/bin/mcp-ratelimit-service
USER 65532:65532
# gRPC (ShouldRateLimit), then HTTP (/metrics, /healthz, /readyz).
EXPOSE 8089 9089
ENTRYPOINT ["mcp-ratelimit-service"]
CMD ["--listen", "0.0.0.0:8089", "--http-listen", "0.0.0.0:9089", "--redis", "redis://redis:6379"]

# Last, so it is what a plain `docker build .` produces: the module alone.
FROM scratch
COPY --from=build /plugin.wasm /plugin.wasm
