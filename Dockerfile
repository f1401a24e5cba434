# syntax=docker/dockerfile:1
# tidegate: one static binary (glibc, OpenSSL and zlib linked in) on distroless static.
#   docker build -t tidegate:0.1.0 .
# The build stage runs scripts/build-release, the script the release is built with, which also
# checks that the binary needs no loader and no shared library.
# Without Docker or a registry to pull from: scripts/build-image builds this runtime stage
# FROM scratch with buildah (deploy/image/Containerfile.scratch; Debian's CA bundle and zoneinfo
# instead of distroless), and tests/image.rs builds that image and runs it with runc.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    scripts/build-release \
 && install -D -m 0755 target/ship/tidegate /out/tidegate \
 && install -d -o 65532 -g 65532 -m 0750 /out/data

# CA certificates, /etc/nsswitch.conf and the nonroot user; no libc (the binary carries its own).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tidegate /usr/local/bin/tidegate
# Owned by nonroot so a fresh volume is writable; the root filesystem can be read-only.
COPY --from=build --chown=65532:65532 /out/data /var/lib/tidegate
USER nonroot
# Two malloc arenas instead of one per thread (lower RSS; docs/benchmarks.md).
ENV MALLOC_ARENA_MAX=2
VOLUME /var/lib/tidegate
# /healthz /readyz /metrics /api/v1/rollouts POST /hooks/git
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/tidegate", "run", "--config", "/etc/tidegate/config.yaml"]
