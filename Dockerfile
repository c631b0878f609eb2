# mvrefresher: a static binary on a minimal, non-root image.
# Build: docker build -t mvrefresher:dev . (add --build-arg VERSION=v0.1.0 for
# a release); the manifests of deploy/kubernetes use that tag.
# With podman or buildah, build with --format docker: their default, the OCI
# image format, has no HEALTHCHECK and drops it (with a warning).
# Base images are named in full: podman and buildah refuse short names.
FROM docker.io/library/golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/mvrefresher/mvrefresher/internal/buildinfo.version=${VERSION}" -o /mvrefresher ./cmd/mvrefresher

# distroless/static: CA certificates, tzdata, a nonroot user (65532), no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /mvrefresher /usr/local/bin/mvrefresher
USER nonroot:nonroot
# Configuration through the environment alone: MVREFRESHER_DATABASE_URL (or
# DATABASE_URL), MVREFRESHER_NATS_URL, ... (see the README). Listen on all
# interfaces inside the container so that probes can reach the endpoints.
ENV MVREFRESHER_LISTEN=0.0.0.0:9188 \
    MVREFRESHER_LOG_FORMAT=json
EXPOSE 9188
HEALTHCHECK --interval=15s --timeout=5s --retries=3 CMD ["mvrefresher", "health", "--url", "http://127.0.0.1:9188/healthz"]
ENTRYPOINT ["mvrefresher"]
CMD ["run"]
