# The arena binary for docker-compose: built in a Rust image, run from a slim Debian.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin arena

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/arena /usr/local/bin/arena
ENV HOST=0.0.0.0 PORT=9999
EXPOSE 9999
ENTRYPOINT ["arena"]
CMD ["serve"]
