# Build the gamemodes binary and run it on a small base image.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN mkdir -p /out && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/...

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
EXPOSE 8080 4222
ENTRYPOINT ["/usr/local/bin/gamemodes"]
CMD ["serve", "--http-addr", ":8080", "--data-dir", "/data"]
