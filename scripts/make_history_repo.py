"""Build a git repository from a history file (``examples/repos/*-history.yaml``).

A repository with history cannot be bundled as files (a nested ``.git`` cannot
be committed), so examples that need history, such as a regression for
``triage-failure`` to find, describe it commit by commit. Authors, committers
and dates come from the file and no user or system git configuration is read,
so every build of the same file has the same commit ids.

    python scripts/make_history_repo.py examples/repos/stats-history.yaml /tmp/stats
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

_PERSON = re.compile(r"^(?P<name>[^<>]+?)\s*<(?P<email>[^<>]+)>$")


def build(spec_path: Path, dest: Path) -> dict[str, str]:
    """Make the repository at ``dest`` (which must not exist); returns branch → head commit."""
    spec = yaml.safe_load(spec_path.read_text())
    main = spec.get("branch", "main")
    dest.mkdir(parents=True)
    _git(dest, "init", "-q", "-b", main)
    for commit in spec["commits"]:
        _commit(dest, commit)
    for branch, line in (spec.get("branches") or {}).items():
        _git(dest, "checkout", "-q", "-b", branch, line.get("from", main))
        for commit in line["commits"]:
            _commit(dest, commit)
    _git(dest, "checkout", "-q", main)
    heads = _git(dest, "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads")
    return dict(line.split(" ", 1) for line in heads.splitlines())


def _commit(repo: Path, commit: dict[str, Any]) -> None:
    for rel, text in (commit.get("files") or {}).items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for rel in commit.get("delete") or []:
        (repo / rel).unlink()
    person = _PERSON.match(commit["author"])
    if person is None:
        raise ValueError(f"author {commit['author']!r} is not 'Name <email>'")
    name, email, date = person["name"], person["email"], str(commit["date"])
    env = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_AUTHOR_DATE": date,
           "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email, "GIT_COMMITTER_DATE": date}
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "--no-verify", "-m", commit["message"], env=env)


def _git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    isolated = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", **(env or {})}
    return subprocess.run(["git", *args], cwd=repo, env=isolated, check=True,
                          capture_output=True, text=True).stdout.strip()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: make_history_repo.py HISTORY.yaml DEST", file=sys.stderr)
        return 2
    for branch, sha in build(Path(argv[0]), Path(argv[1])).items():
        print(f"{branch} {sha}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
