# Build: docker build --build-arg REVISION="$(git rev-parse --short=12 HEAD)" -t secure-channel-exporter .
# Run:   docker run --rm -p 10090:10090 secure-channel-exporter --demo --web.listen-address :10090
#
# .git is not sent to the build (.dockerignore), so the revision reported by
# secure_channel_exporter_build_info comes in as a build argument (build.rs
# reads SECURE_CHANNEL_EXPORTER_REVISION).
FROM rust:1.88-slim-bookworm AS build
WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when
# Cargo.toml or Cargo.lock change, not on every source edit. The stub
# sources are just enough for cargo to resolve every target.
COPY Cargo.toml Cargo.lock ./
COPY crates/secure-channel-client/Cargo.toml crates/secure-channel-client/
RUN mkdir -p src/bin benches crates/secure-channel-client/src \
 && echo 'fn main() {}' > src/main.rs \
 && echo 'fn main() {}' > src/bin/secure-channel-sim.rs \
 && echo 'fn main() {}' > build.rs \
 && touch src/lib.rs benches/pipeline.rs benches/scrape_load.rs crates/secure-channel-client/src/lib.rs \
 && cargo build --release --locked --bin secure-channel-exporter \
 && rm -rf src benches build.rs crates/secure-channel-client/src \
    target/release/.fingerprint/secure-channel-*

COPY . .
ARG REVISION=unknown
ENV SECURE_CHANNEL_EXPORTER_REVISION=${REVISION}
RUN cargo build --release --locked --bin secure-channel-exporter \
 && cp target/release/secure-channel-exporter /secure-channel-exporter

# glibc and CA certificates, no shell. 65532 is distroless' "nonroot";
# numeric, so that Kubernetes' runAsNonRoot can verify it (DL3066 too).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /secure-channel-exporter /usr/local/bin/secure-channel-exporter
USER 65532:65532
EXPOSE 10090
ENTRYPOINT ["/usr/local/bin/secure-channel-exporter"]
