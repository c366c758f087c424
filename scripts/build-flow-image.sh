#!/usr/bin/env bash
# Build the flow-run image of the agentic-docker work pool (prefect.yaml) without a registry:
# the pack and all its dependencies are turned into wheels on the host (PyPI is reachable
# there), then `docker build --network none` installs them on top of the sandbox image
# (Debian bookworm, python3.11, git). The image holds the installed pack only, no checkout:
# the deployments' entrypoints are module paths (prefect_agentic.flows.run_plan:run_plan).
# Usage: scripts/build-flow-image.sh [IMAGE]   build IMAGE (default prefect-agentic/flow-runner:1)
#        scripts/build-flow-image.sh --content  build the image tagged for this checkout's pack
#                                               (flow-runner:1-HASH of its code and base image)
#        scripts/build-flow-image.sh --print-content-tag   only print that tag
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE=${AGENTIC_SANDBOX_IMAGE:-prefect-agentic/sandbox:2}
PY=${PYTHON:-$ROOT/.venv/bin/python}
log() { printf '[flow-image] %s\n' "$*"; }

docker image inspect "$BASE" >/dev/null 2>&1 || { log "base image $BASE missing (make setup builds it)"; exit 1; }
# What the image is made of: the pack's code, its dependencies' pins, this script, the base.
content_tag() {
  local sum
  sum=$( { git -C "$ROOT" ls-files -z -- pyproject.toml prefect_agentic scripts/build-flow-image.sh \
             | (cd "$ROOT" && xargs -0 sha256sum); docker image inspect -f '{{.Id}}' "$BASE"; } \
         | sha256sum | cut -c1-12)
  echo "prefect-agentic/flow-runner:1-$sum"
}
case "${1:-}" in
  --print-content-tag) content_tag; exit 0 ;;
  --content) IMAGE=$(content_tag) ;;
  *) IMAGE=${1:-prefect-agentic/flow-runner:1} ;;
esac
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
log "wheels of prefect-agentic and its dependencies (host, $("$PY" --version))"
"$PY" -m pip wheel --quiet --wheel-dir "$ctx/wheels" "$ROOT" 2> >(grep -v "is ignored: it is neither" >&2)
# pip runs from its own wheel in the build; async-timeout is what the host's newer 3.11 does not
# need but the image's Debian 3.11.2 does (redis requires it before 3.11.3)
"$PY" -m pip download --quiet --no-deps --dest "$ctx/wheels" pip async-timeout \
  2> >(grep -v "is ignored: it is neither" >&2)
cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM $BASE
USER root
COPY wheels /tmp/wheels
RUN python3 "\$(ls /tmp/wheels/pip-*.whl)/pip" install --quiet --no-index --find-links /tmp/wheels \\
      --break-system-packages --no-warn-script-location prefect-agentic \\
 && rm -rf /tmp/wheels
# No checkout in the image: deployments name the installed pack's flows by module path.
WORKDIR /tmp
LABEL org.prefect-agentic.flow-runner="1"
DOCKERFILE
log "docker build --network none -t $IMAGE"
docker build --quiet --network none -t "$IMAGE" "$ctx" >/dev/null
log "built $IMAGE: $(docker run --rm --network none "$IMAGE" python3 -c 'import prefect, prefect_agentic; print("prefect", prefect.__version__, "prefect-agentic", prefect_agentic.__version__)')"
