"""Soak: a long chaos campaign of the demo plan with every sandbox fault kind at once.

Not a test (it takes minutes): it runs ``--runs`` chaos runs on the embedded
API and real Docker, one campaign round each (a fault-free reference run, the
chaos run, its clean re-run, as ``agentic chaos`` does), then prints the
per-kind table, every invariant violation, and the median chaos run against
the median fault-free reference run of the same rounds (interleaved, same
process). Exits 1 on any violation.

    .venv/bin/python bench/chaos_soak.py --runs 20 --seed 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

_STATE = Path(tempfile.mkdtemp(prefix="agentic-bench-soak-"))
os.environ["PREFECT_HOME"] = str(_STATE / "prefect")
os.environ["AGENTIC_HOME"] = str(_STATE / "agentic")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")

from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.chaos.campaign import Campaign
from prefect_agentic.chaos.spec import ChaosSpec
from prefect_agentic.plan import load_plan
from prefect_agentic.settings import embedded_run_settings

ROOT = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("AGENTIC_SANDBOX_IMAGE", "prefect-agentic/sandbox:2")
SPEC = ChaosSpec.model_validate({"faults": [
    {"kind": "latency_before", "rate": 0.3, "seconds": 0.5},
    {"kind": "tool_exit", "rate": 0.2, "attempts": [1]},
    {"kind": "tool_timeout", "rate": 0.1, "attempts": [1]},
    {"kind": "container_kill", "steps": "fix", "rate": 0.5, "attempts": [1], "seconds": 0},
    {"kind": "docker_unavailable", "rate": 0.2, "seconds": 2},
    {"kind": "garbled_output", "tools": "pytest", "rate": 0.3},
]})


def demo_repo() -> Path:
    repo = _STATE / "demo"
    shutil.copytree(ROOT / "examples" / "repos" / "demo", repo)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "demo"], cwd=repo, check=True)
    return repo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    plan = load_plan(ROOT / "examples" / "plans" / "fix-lint-demo.yaml")
    campaign = Campaign(plan, demo_repo(), sandbox=SandboxSettings(image=IMAGE),
                        progress=lambda line: print(line, file=sys.stderr, flush=True))
    with embedded_run_settings():
        rounds = [campaign.run(SPEC, runs=1, seed=args.seed + i) for i in range(args.runs)]
    report = rounds[0].model_copy(update={"runs": [run for r in rounds for run in r.runs]})
    reference = statistics.median(r.reference_elapsed_s for r in rounds[1:] or rounds)  # the first one warms up
    print(f"soak of plan {report.plan_id}: {len(report.runs)} chaos runs from seed {report.seed}")
    print(f"  {'fault kind':<20}{'injected':>9}{'recovered':>10}{'failed cleanly':>15}{'absorbed':>9}{'violations':>11}")
    for kind, counts in report.kinds.items():
        print(f"  {kind:<20}{counts.injected:>9}{counts.recovered:>10}{counts.failed_cleanly:>15}"
              f"{counts.absorbed:>9}{counts.violations:>11}")
    statuses = [run.status for run in report.runs]
    print(f"  run statuses: {', '.join(f'{s} {statuses.count(s)}' for s in sorted(set(statuses)))}")
    for violation in report.violations:
        print(f"  VIOLATION {violation.invariant.value}: {violation.detail}")
    median = statistics.median(run.elapsed_s for run in report.runs)
    print(f"chaos run median {median:.2f} s, fault-free run median {reference:.2f} s, ratio {median / reference:.2f}; "
          f"{len(report.violations)} invariant violation(s)")
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
