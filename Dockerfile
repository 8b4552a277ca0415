# The arena binary for docker-compose: built in a Rust image, run from a slim Debian. Both images
# are build arguments so that a machine with no registry builds on local stand-ins
# (scripts/docker-images; README, "Docker") without editing this file.
ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# The dependencies first, in a layer of their own, against stub sources: a change to the code
# then rebuilds only arena (~1.5 min with its fat LTO) instead of everything (~4.5 min).
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY advanced_tests/Cargo.toml advanced_tests/Cargo.toml
RUN mkdir -p src advanced_tests/src \
    && echo 'fn main() {}' >src/main.rs && touch src/lib.rs advanced_tests/src/lib.rs \
    && cargo build --release --bin arena \
    && rm -rf src advanced_tests/src target/release/.fingerprint/arena-* target/release/deps/arena-* target/release/deps/libarena-*
# Only what the binary is built from, so that editing a script or a doc reuses this layer too.
COPY src src
COPY sql sql
COPY advanced_tests/src advanced_tests/src
RUN cargo build --release --bin arena

FROM ${RUNTIME_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/arena /usr/local/bin/arena
ENV HOST=0.0.0.0 PORT=9999
EXPOSE 9999
ENTRYPOINT ["arena"]
CMD ["serve"]
