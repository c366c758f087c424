#!/usr/bin/env bash
# Build the sandbox image without any container registry:
#   1. a Debian bookworm base from the machine's own apt sources (mmdebstrap),
#   2. docker build --network none adding ruff (from the PyPI wheel, fetched on the host).
# The base is tagged with a hash of its package list, so a changed list builds a new base
# and leaves the old one to images that still use it.
# Usage: scripts/build-sandbox-image.sh [IMAGE]   (default: prefect-agentic/sandbox:2)
set -euo pipefail

IMAGE=${1:-${AGENTIC_SANDBOX_IMAGE:-prefect-agentic/sandbox:2}}
RUFF_VERSION=${RUFF_VERSION:-0.17.6}
# pip and venv install wheels from a wheelhouse (upgrade-dependency); black formats what the
# Hypothesis ghostwriter writes (generate-tests); bandit scans (security-scan).
PACKAGES=python3,git,python3-pytest,python3-hypothesis,python3-coverage,procps,ca-certificates,\
python3-pip,python3-venv,black,bandit
BASE=prefect-agentic/sandbox-base:bookworm-$(printf '%s' "$PACKAGES" | sha256sum | cut -c1-12)
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python3}

log() { printf '[sandbox-image] %s\n' "$*"; }

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  if ! command -v mmdebstrap >/dev/null; then
    log "installing mmdebstrap"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
  fi
  log "building base $BASE with mmdebstrap ($PACKAGES)"
  mmdebstrap --quiet --variant=apt --include="$PACKAGES" bookworm - | docker import - "$BASE" >/dev/null
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
log "fetching ruff $RUFF_VERSION on the host"
"$PY" -m pip download --quiet --only-binary=:all: --no-deps "ruff==$RUFF_VERSION" -d "$context/wheel"
"$PY" - "$context" <<'PYEOF'
import pathlib, sys, zipfile
context = pathlib.Path(sys.argv[1])
wheel = next((context / "wheel").glob("ruff-*.whl"))
with zipfile.ZipFile(wheel) as zf:
    name = next(n for n in zf.namelist() if n.endswith(".data/scripts/ruff"))
    (context / "ruff").write_bytes(zf.read(name))
PYEOF
cp "$HERE/sandbox-image/Dockerfile" "$context/Dockerfile"
log "docker build --network none -t $IMAGE"
docker build --quiet --network none --build-arg "BASE=$BASE" -t "$IMAGE" "$context" \
  >"$context/build.log" 2>&1 || { cat "$context/build.log" >&2; exit 1; }
docker run --rm --network none "$IMAGE" sh -c \
  'ruff --version && python3 -m pytest --version 2>&1 && git --version && black --version | head -1 \
   && bandit --version | head -1 && python3 -m pip --version && id agent' \
  | sed 's/^/[sandbox-image]   /'
log "built $IMAGE"
