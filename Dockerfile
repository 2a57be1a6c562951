# Build: docker build -t secure-channel-exporter .
# Run:   docker run --rm -p 10090:10090 secure-channel-exporter --demo --web.listen-address :10090
FROM rust:1.88-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin secure-channel-exporter \
 && cp target/release/secure-channel-exporter /secure-channel-exporter

# glibc and CA certificates, no shell, runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /secure-channel-exporter /usr/local/bin/secure-channel-exporter
USER nonroot
EXPOSE 10090
ENTRYPOINT ["/usr/local/bin/secure-channel-exporter"]
