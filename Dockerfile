# syntax=docker/dockerfile:1.7
# mlflow-secrets: the CLI, the REST server and the Kubernetes operator in one
# binary. Multi-stage: a full Rust toolchain builds it, and a distroless
# runtime (no shell, no package manager) runs it as a non-root user.
#
#   docker build -t mlflow-secrets:0.1.0 .
#   docker run --rm mlflow-secrets:0.1.0 --help
#
# The chart (charts/mlflow-secrets) runs it with `operator`, the default CMD.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
# Only what the build reads: the manifests, the sources, the SQL migrations
# (embedded by sqlx::migrate!, and build.rs, which rebuilds when one is added:
# the target directory is a cache mount) and the bench targets (declared in
# Cargo.toml, so cargo wants them present). tests/ and docs/ stay out of the
# context.
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY migrations ./migrations
COPY benches ./benches
# Cache mounts keep the registry and the compiled dependencies between
# builds. The target directory is a cache mount, so the binary is copied out
# of it within the same RUN.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin mlflow-secrets \
 && install -D -m 0755 target/release/mlflow-secrets /out/mlflow-secrets

# The binary links glibc (libc, libm, libgcc_s; SQLite is bundled and TLS is
# rustls, so no libssl): distroless/cc has exactly those, plus CA
# certificates and tzdata. Debian 12 matches the bookworm builder's glibc.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="mlflow-secrets" \
      org.opencontainers.image.description="Encrypted secrets store for MLflow: CLI, REST server and Kubernetes operator with an injecting webhook" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://example.invalid/mlflow-secrets" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
COPY --from=builder /out/mlflow-secrets /usr/local/bin/mlflow-secrets
# 65532 is distroless's `nonroot`; numeric, so that runAsNonRoot can verify it.
USER 65532:65532
WORKDIR /home/nonroot
# The operator's HTTPS port (webhook, probes, metrics).
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/mlflow-secrets"]
CMD ["operator"]
