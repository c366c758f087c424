#!/usr/bin/env bash
# Set up a machine for prefect-agentic: Python environment, Docker engine, sandbox image,
# the Docker work pool's flow-run image, Chromium for the approval-form test, PostgreSQL for
# the Prefect server of the scale-out tests.
# Idempotent: each phase is skipped when already done.
# Usage: scripts/setup.sh [python] [docker] [runsc] [image] [flow_image] [browser] [postgres]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
IMAGE=${AGENTIC_SANDBOX_IMAGE:-prefect-agentic/sandbox:2}
PHASES=${*:-python docker runsc image flow_image browser postgres}
# The role the scale-out tests' Prefect servers use (each test session makes its own database).
PG_ROLE=${AGENTIC_PG_ROLE:-prefect_agentic}
PG_PASSWORD=${AGENTIC_PG_PASSWORD:-prefect_agentic}
log() { printf '[setup] %s\n' "$*"; }

need_apt() {  # install Debian packages, updating the index once
  if [ -z "${_APT_UPDATED:-}" ]; then apt-get update -qq; _APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

phase_python() {
  [ -x .venv/bin/python ] || { log "creating .venv"; python3 -m venv .venv; }
  stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
  if [ ! -e "$stamp" ]; then
    log "installing prefect-agentic and its dependencies into .venv"
    pip_log="${TMPDIR:-/tmp}/prefect-agentic-pip.log"
    if ! .venv/bin/python -m pip install --quiet -e '.[dev]' >"$pip_log" 2>&1; then
      log "pip install failed; its log ends with:"; tail -n 40 "$pip_log" >&2; exit 1
    fi
    rm -f .venv/.installed-*; touch "$stamp"
  fi
  log "python: $(.venv/bin/python --version), prefect $(.venv/bin/python -c 'import prefect; print(prefect.__version__)')"
}

phase_docker() {
  if docker info >/dev/null 2>&1; then log "docker engine: running"; return; fi
  command -v docker >/dev/null && command -v dockerd >/dev/null || { log "installing docker.io"; need_apt docker.io; }
  dockerd_log="${TMPDIR:-/tmp}/prefect-agentic-dockerd.log"
  log "starting dockerd (log: $dockerd_log)"
  setsid nohup dockerd >"$dockerd_log" 2>&1 < /dev/null &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && { log "docker engine: running"; return; }; sleep 1; done
  log "dockerd did not answer within 60 s; its log ends with:"; tail -n 30 "$dockerd_log" >&2
  exit 1
}

phase_runsc() {  # gVisor as a second wall: SandboxSettings(runtime="runsc"); tests/test_workspace_escape.py
  command -v runsc >/dev/null || { log "installing runsc (gVisor)"; need_apt runsc; }
  if docker info --format '{{json .Runtimes}}' | grep -q 'platform=ptrace","--network=none"\]}}$'; then log "runsc: registered with dockerd"; return; fi
  python3 - <<'PY'
import json, os
path = "/etc/docker/daemon.json"
config = json.load(open(path)) if os.path.exists(path) else {}
# --network=none: gVisor refuses to set up interfaces in this machine's network namespace
# ("cannot run with network enabled in root network namespace"); sandboxes have no network anyway.
# --platform=kvm hung at container start here (docs/security.md), so ptrace it is.
runtimes = config.setdefault("runtimes", {})
runtimes.pop("runsc-kvm", None)
runtimes["runsc"] = {"path": "/usr/bin/runsc", "runtimeArgs": ["--platform=ptrace", "--network=none"]}
os.makedirs(os.path.dirname(path), exist_ok=True)
json.dump(config, open(path, "w"), indent=2)
PY
  kill -HUP "$(pidof dockerd)"  # dockerd reloads its runtimes on SIGHUP; running containers are untouched
  for _ in $(seq 20); do docker info --format '{{json .Runtimes}}' | grep -q '"runsc"' && { log "runsc: registered with dockerd"; return; }; sleep 1; done
  log "dockerd did not pick up the runsc runtime from /etc/docker/daemon.json"; exit 1
}

phase_image() {
  if docker image inspect "$IMAGE" >/dev/null 2>&1; then log "sandbox image: $IMAGE present"; return; fi
  PYTHON="$ROOT/.venv/bin/python"
  [ -x "$PYTHON" ] || PYTHON=python3
  PYTHON="$PYTHON" scripts/build-sandbox-image.sh "$IMAGE"
}

phase_flow_image() {  # the Docker work pool's flow-run image of this checkout (tests/test_docker_pool.py)
  tag=$(scripts/build-flow-image.sh --print-content-tag)
  if docker image inspect "$tag" >/dev/null 2>&1; then log "flow-run image: $tag present"; return; fi
  PYTHON="$ROOT/.venv/bin/python" scripts/build-flow-image.sh --content
}

phase_browser() {  # Debian's Chromium, driven by Playwright in the approval-form test
  if [ -x /usr/bin/chromium ]; then log "browser: $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"; return; fi
  log "installing chromium (apt)"; need_apt chromium
  log "browser: $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
}

phase_postgres() {
  command -v pg_ctlcluster >/dev/null && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 \
    || { log "installing postgresql"; need_apt postgresql; }
  version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main"' | grep -q . \
    || { log "creating PostgreSQL $version cluster"; pg_createcluster "$version" main >/dev/null; }
  if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $4}' | grep -q online; then
    log "starting PostgreSQL $version"; pg_ctlcluster "$version" main start
  fi
  as_pg() { (cd / && runuser -u postgres -- "$@"); }
  if ! as_pg psql -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$PG_ROLE'" | grep -q 1; then
    log "creating PostgreSQL role $PG_ROLE"
    as_pg psql -q -c "CREATE ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD'"
  fi
  log "postgresql: $version running on port $(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $3}'), role $PG_ROLE"
}

for phase in $PHASES; do "phase_$phase"; done
