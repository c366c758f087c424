"""Run the bundled example plan on the bundled example repository.

The example repository is written to `.demo/demo-repo` as a git repository
with a fixed commit date, so every demo run starts from the same commit and a
second run shows Prefect's cache at work.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "examples" / "repos" / "demo"
PLAN = ROOT / "examples" / "plans" / "fix-lint-demo.yaml"
REPO = ROOT / ".demo" / "demo-repo"


def make_demo_repo() -> Path:
    shutil.rmtree(REPO, ignore_errors=True)
    shutil.copytree(SOURCE, REPO)
    env = {**os.environ, "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
           "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z", "GIT_CONFIG_GLOBAL": os.devnull}
    identity = ["-c", "user.name=Demo", "-c", "user.email=demo@example.invalid"]
    for command in (["init", "-q", "-b", "main"], ["add", "-A"], [*identity, "commit", "-qm", "demo"]):
        subprocess.run(["git", *command], cwd=REPO, env=env, check=True)
    return REPO


def main() -> int:
    repo = make_demo_repo()
    print(f"Example repository: {repo}\nPlan: {PLAN}\n", flush=True)
    command = [sys.executable, "-m", "prefect_agentic.cli.main", "run", str(PLAN), "--repo", str(repo)]
    return subprocess.call([*command, *sys.argv[1:]])


if __name__ == "__main__":
    raise SystemExit(main())
