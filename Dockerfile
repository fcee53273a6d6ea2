# Build the gamemodes binaries and run them on a small base image.
# /usr/local/bin holds gamemodes, the other commands under cmd/ (loadgen),
# and healthcheck (deploy/healthcheck: the image has no shell or curl).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN mkdir -p /out /data && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/... ./deploy/healthcheck

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
# The embedded NATS server's store (single-node mode), owned by the nonroot
# user so that a volume mounted on /data is writable.
COPY --from=build --chown=65532:65532 /data /data
EXPOSE 8080 4222
# Ready: NATS connected, topology ensured, lobby view synced (edges), archive
# writable (archivers). The port follows GAMEMODES_HTTP_ADDR (default :8080).
HEALTHCHECK --interval=5s --timeout=4s --start-period=20s --retries=6 CMD ["/usr/local/bin/healthcheck"]
ENTRYPOINT ["/usr/local/bin/gamemodes"]
CMD ["serve", "--http-addr", ":8080", "--data-dir", "/data"]
