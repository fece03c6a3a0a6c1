# dnsvalve container image: a static binary on a distroless base, run as a
# non-root user, configured from a mounted file.
#
#   docker build -t dnsvalve .
#   docker run -p 53:53/udp -p 53:53/tcp -v $PWD/dnsvalve.yaml:/etc/dnsvalve/dnsvalve.yaml:ro dnsvalve
#
# The default config in the image (deploy/docker/dnsvalve.yaml) listens on :53
# and serves metrics on :9153; mount your own over /etc/dnsvalve/dnsvalve.yaml.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/dnsvalve ./cmd/dnsvalve
RUN mkdir -p /out/state && chown 65532:65532 /out/state

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/dnsvalve /usr/local/bin/dnsvalve
COPY deploy/docker/dnsvalve.yaml /etc/dnsvalve/dnsvalve.yaml
COPY --from=build --chown=65532:65532 /out/state /var/lib/dnsvalve
USER 65532:65532
EXPOSE 53/udp 53/tcp 9153/tcp
VOLUME ["/var/lib/dnsvalve"]
ENTRYPOINT ["/usr/local/bin/dnsvalve", "serve", "--config", "/etc/dnsvalve/dnsvalve.yaml"]
