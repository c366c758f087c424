#!/usr/bin/env bash
# Pull step of the deployments (prefect.yaml): make sure the flow run's Python has this
# checkout's version of prefect-agentic. Quick when it already has it (no pip run), so a
# worker that serves many runs pays ~0.1 s a run. Python: $AGENTIC_PYTHON, else python3.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${AGENTIC_PYTHON:-python3}
want=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)
have=$("$PY" -c 'import importlib.metadata as m; print(m.version("prefect-agentic"))' 2>/dev/null || true)
if [ "$have" = "$want" ]; then
  echo "prefect-agentic $have already installed for $PY"
  exit 0
fi
echo "installing prefect-agentic $want (had: ${have:-none}) for $PY"
"$PY" -m pip install --quiet .
