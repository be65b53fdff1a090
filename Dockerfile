# Builds the sluice binary with its built-in plugins embedded, then ships it
# alone on a slim base.
FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN rustup target add wasm32-wasip2
COPY . .
RUN cargo build --profile production --locked -p sluice

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/sluice --create-home sluice
COPY --from=build /src/target/production/sluice /usr/local/bin/sluice
USER sluice
WORKDIR /var/lib/sluice
EXPOSE 8080
ENTRYPOINT ["sluice"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
