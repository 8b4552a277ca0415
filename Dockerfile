# The arena binary for docker-compose: built in a Rust image, run from a slim Debian. Both images
# are build arguments so that a machine with no registry builds on local stand-ins
# (scripts/docker-images; README, "Docker") without editing this file.
ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin arena

FROM ${RUNTIME_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/arena /usr/local/bin/arena
ENV HOST=0.0.0.0 PORT=9999
EXPOSE 9999
ENTRYPOINT ["arena"]
CMD ["serve"]
