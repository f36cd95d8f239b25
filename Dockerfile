# keygate: multi-stage build; the runtime image holds only the binary and CA roots.
# The base images can be swapped for mirrors (--build-arg BUILD_IMAGE=...);
# scripts/docker-check.sh builds and runs this image the way deploy/kubernetes does.
ARG BUILD_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${BUILD_IMAGE} AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Cached dependency layer: build against an empty crate first.
COPY Cargo.toml Cargo.lock rust-toolchain.toml ./
# Every [[bench]] of Cargo.toml needs a stand-in file here too, or cargo refuses
# the manifest.
RUN mkdir -p src benches && echo 'fn main() {}' > src/main.rs && echo '' > src/lib.rs \
    && for b in $(awk '/^\[\[bench\]\]/ {b = 1; next} /^\[/ {b = 0} b && $1 == "name" {gsub(/"/, "", $3); print $3}' Cargo.toml); do \
         echo 'fn main() {}' > "benches/$b.rs"; done \
    && cargo build --release --locked && rm -rf src benches
COPY src ./src
COPY benches ./benches
# Served at /v1/openapi.json: compiled into the binary.
COPY openapi ./openapi
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

FROM ${RUNTIME_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /var/lib/keygate --create-home keygate
COPY --from=build /src/target/release/keygate /usr/local/bin/keygate
COPY conf /etc/keygate
USER 10001:10001
WORKDIR /var/lib/keygate
# The SQLite store of the default config lives here.
VOLUME /var/lib/keygate
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/keygate"]
# The image's own config: listens on 0.0.0.0, the upstream from KEYGATE_UPSTREAM_URL.
CMD ["serve", "-c", "/etc/keygate/docker.yaml"]
