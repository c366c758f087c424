"""Commands that run in a copy of a base commit, inside the sandbox.

Gates such as "no new high-severity findings" or "coverage rose" compare the
step's worktree with a base: the commit the run started from (``@base``), or
a branch, tag or commit of the repository (``main``). The copy is made in the
container's own ``/tmp`` with ``git archive`` (``.git`` is mounted read-only,
which is all that needs), so the run workspace is never touched.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from git import GitCommandError

from prefect_agentic.errors import ToolError
from prefect_agentic.workspace import run_git

BASE_CHECKOUT = "/tmp/agentic-base"
BASE_CHECKOUT_FAILED_EXIT = 98
"""Exit code of a command whose base snapshot could not be copied."""


def at_base(script: str, base_snapshot: str) -> list[str]:
    """A command that runs the shell ``script`` with a fresh copy of ``base_snapshot`` as working
    directory (fresh: a warm container may still hold the copy of another commit)."""
    copy = (f"rm -rf {BASE_CHECKOUT} && mkdir -p {BASE_CHECKOUT} && git archive -o /tmp/agentic-base.tar {shlex.quote(base_snapshot)} "
            f"&& tar -xf /tmp/agentic-base.tar -C {BASE_CHECKOUT} && cd {BASE_CHECKOUT}")
    return ["sh", "-c", f"{{ {copy}; }} || exit {BASE_CHECKOUT_FAILED_EXIT}\n{script}"]


def resolve_against(workspace: Path, base_snapshot: str, against: str) -> str:
    """The commit ``against`` names: ``@base``, or a ref of the repository the run cloned."""
    if against == "@base":
        return base_snapshot
    for candidate in (against, f"origin/{against}"):
        try:
            return run_git(workspace, "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}")
        except GitCommandError:
            continue
    raise ToolError(f"'{against}' names no commit of the repository (give a branch, tag or commit, "
                    "or '@base' for the run's starting commit)")
