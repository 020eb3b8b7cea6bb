# syntax=docker/dockerfile:1
#
# One image per service: the skiff host plus that service's component.
#
#   docker build --build-arg SERVICE=users  -t registry.example/skiff-users:0.1.0  .
#   docker build --build-arg SERVICE=auth   -t registry.example/skiff-auth:0.1.0   .
#   docker build --build-arg SERVICE=notify -t registry.example/skiff-notify:0.1.0 .
#
# Tags carry the version (the workspace version in Cargo.toml), never `latest`.

# ---- build: the toolchain pinned by rust-toolchain.toml (1.95.0 + wasm32-wasip2) ----
# Fully qualified, so that buildah and podman (which refuse short names by default) build it too.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src

# Install the pinned toolchain first so this layer is cached across source changes.
COPY rust-toolchain.toml ./
RUN rustup toolchain install && rustc --version

COPY . .

# users | auth | notify
ARG SERVICE=users
# The component ships twice: precompiled (`skiff compile`, so a pod starts without running the
# compiler) and as .wasm, which the host compiles instead if the node's CPU lacks a feature of
# the build machine's.
# The binary loses its debug info (183 MB -> 39 MB, measured by scripts/check-image-context) but
# keeps its symbols, so a panic's backtrace still names functions.
# Cache mounts keep the registry and the target folder between builds; the artefacts are
# copied out of the cache in the same step, because a cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target,sharing=locked \
    case "${SERVICE}" in users|auth|notify) ;; *) echo "SERVICE must be users, auth or notify" >&2; exit 1 ;; esac \
 && cargo build --release --locked -p skiff \
 && cargo build --release --locked --target wasm32-wasip2 -p "${SERVICE}" \
 && mkdir -p /out/components \
 && cp target/release/skiff /out/skiff \
 && strip --strip-debug /out/skiff \
 && cp "target/wasm32-wasip2/release/${SERVICE}.wasm" "/out/components/${SERVICE}.wasm" \
 && /out/skiff compile --component "/out/components/${SERVICE}.wasm" --output "/out/components/${SERVICE}.cwasm"

# ---- runtime: glibc + libgcc, no shell, no package manager, non-root ----
FROM gcr.io/distroless/cc-debian12:nonroot
ARG SERVICE=users
ARG VERSION=0.1.0

LABEL org.opencontainers.image.title="skiff-${SERVICE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.description="skiff host serving the ${SERVICE} WebAssembly component" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=build /out/skiff /usr/local/bin/skiff
COPY --from=build /out/components/ /app/components/

# Defaults for `docker run`; the Kubernetes manifests set the same explicitly.
ENV SKIFF_COMPONENT=/app/components/${SERVICE}.cwasm \
    SKIFF_SERVICE_NAME=${SERVICE} \
    SKIFF_COMPONENT_VERSION=${VERSION} \
    SKIFF_LISTEN=0.0.0.0:4000 \
    SKIFF_LOG_FORMAT=json

# distroless' `nonroot` user, numeric so that runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 4000
ENTRYPOINT ["/usr/local/bin/skiff", "serve"]
