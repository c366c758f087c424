#!/usr/bin/env bash
# Build the example service's runtime image without any container registry, like the sandbox
# image: an mmdebstrap base from the machine's apt sources (python3, redis-server, haproxy),
# then docker build --network none. The base is tagged with a hash of its package list.
# Usage: scripts/build-service-image.sh [IMAGE]   (default: prefect-agentic/service-runtime:1)
set -euo pipefail

IMAGE=${1:-${AGENTIC_SERVICE_RUNTIME_IMAGE:-prefect-agentic/service-runtime:1}}
PACKAGES=python3,redis-server,haproxy,ca-certificates
BASE=prefect-agentic/service-base:bookworm-$(printf '%s' "$PACKAGES" | sha256sum | cut -c1-12)
HERE=$(cd "$(dirname "$0")" && pwd)

log() { printf '[service-image] %s\n' "$*"; }

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  if ! command -v mmdebstrap >/dev/null; then
    log "installing mmdebstrap"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
  fi
  log "building base $BASE with mmdebstrap ($PACKAGES)"
  mmdebstrap --quiet --variant=apt --include="$PACKAGES" bookworm - | docker import - "$BASE" >/dev/null
fi

log "docker build --network none -t $IMAGE"
docker build --quiet --network none --build-arg "BASE=$BASE" -t "$IMAGE" "$HERE/service-image" >/dev/null
docker run --rm --network none "$IMAGE" sh -c 'python3 --version && redis-server --version && haproxy -v | head -1' \
  | sed 's/^/[service-image]   /'
log "built $IMAGE"
