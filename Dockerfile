# kubectl-serverfirst image: the probe-pod agent, the scheduled Job and the CLI.
# Multi-stage: a static binary on distroless, non-root. Build with `make image`.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd/ cmd/
COPY cluster/ cluster/
COPY probe/ probe/
COPY report/ report/
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/kubectl-serverfirst ./cmd/kubectl-serverfirst

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/kubectl-serverfirst /usr/local/bin/kubectl-serverfirst
# 65532 is distroless' nonroot user; probe pods and the Job run as it.
USER 65532:65532
ENTRYPOINT ["kubectl-serverfirst"]
