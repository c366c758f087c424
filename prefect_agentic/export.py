"""Bringing a run's result into the user's repository: its final snapshot as a new branch.

A run works in a private clone under ``$AGENTIC_HOME``; its result is the final
snapshot commit there. Exporting fetches that commit (and only the objects it
needs) into the user's repository and points a new branch at it, with git
plumbing only: ``fetch`` without a refspec into the object store, then
``update-ref`` with the branch's expected old value. The user's checked-out
branch, index and worktree are never touched, and an existing branch is never
moved unless asked (and never the checked-out one).

The run workspace is hostile (its commands wrote it), so git reads it as
``upload-pack`` without hooks or fsmonitor, and only its object store and refs
(which the sandbox cannot write) are read. The user's repository is the
user's own: its configuration and credentials apply, as for any push they make.
Pushing is a publication: it goes through the tool policy as the operation
``export:push`` (see ``push_decision``).
"""

from __future__ import annotations

import fnmatch
import os
import subprocess
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from prefect_agentic.blocks.tool_policy import ToolPolicy
from prefect_agentic.errors import AgenticError
from prefect_agentic.policy import PolicyDecision, check_command
from prefect_agentic.workspace import mounted

PUSH_OPERATION = "export:push"
_SAFE_UPLOAD_PACK = "git -c core.hooksPath=/dev/null -c core.fsmonitor=false upload-pack"
_NO_COMMIT = "0" * 40


class ExportError(AgenticError):
    """The snapshot could not be brought into the repository (or pushed) as asked."""


class ExportTarget(BaseModel):
    """Where a run's final snapshot goes (the ``export`` parameter of the ``run-plan`` flow)."""

    into: str = Field(description="Path of the repository that gets the branch (a path the worker can write).")
    branch: str | None = Field(default=None, description="Branch name; default agentic/<plan id>-<run id start>.")
    overwrite: bool = Field(default=False, description="Move the branch if it exists (never the checked-out one).")
    push: str | None = Field(default=None, description="Remote (of that repository) to push the branch to, "
                             "when the tool policy allows operation export:push.")


class ExportResult(BaseModel):
    repo: str
    branch: str
    commit: str
    replaced: str | None = Field(default=None, description="The commit the branch pointed at before, if it existed.")
    pushed_to: str | None = None
    push_refused: str | None = Field(default=None, description="Why the branch was not pushed, if push was asked.")


def default_branch(plan_id: str, flow_run_id: str) -> str:
    return f"agentic/{plan_id}-{flow_run_id[:8]}"


def export_snapshot(workspace: Path, snapshot: str, into: Path, branch: str, *,
                    overwrite: bool = False) -> ExportResult:
    """Make ``refs/heads/<branch>`` of ``into`` point at ``snapshot`` of the run ``workspace``."""
    into = into.resolve()
    _check_repository(into)
    _check_branch_name(into, branch)
    ref = f"refs/heads/{branch}"
    old = _current(into, ref)
    if old is not None and old != snapshot:
        if not overwrite:
            raise ExportError(f"branch '{branch}' already exists in {into} (at {old[:12]}); choose another "
                              "name with --branch, or pass --overwrite to move it")
        if ref in _checked_out(into):
            raise ExportError(f"branch '{branch}' is checked out in {into}; exporting never moves a "
                              "checked-out branch: choose another name with --branch")
    try:
        with mounted(workspace):  # a run unmounts its size-limited workspace when it ends
            _git(into, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
                 f"--upload-pack={_SAFE_UPLOAD_PACK}", str(workspace), snapshot)
    except ExportError as exc:
        raise ExportError(f"could not read snapshot {snapshot[:12]} from the run's workspace {workspace} "
                          f"(removed? re-run the plan to make it again): {exc}") from None
    _git(into, "update-ref", "-m", f"agentic export of snapshot {snapshot[:12]}", ref, snapshot,
         old or _NO_COMMIT)
    return ExportResult(repo=str(into), branch=branch, commit=snapshot,
                        replaced=old if old not in (None, snapshot) else None)


def check_target(target: ExportTarget, branch: str) -> None:
    """Refuse, before a run starts, an export that could not happen at its end."""
    into = Path(target.into).resolve()
    _check_repository(into)
    _check_branch_name(into, branch)
    if not target.overwrite and _current(into, f"refs/heads/{branch}") is not None:
        raise ExportError(f"export: branch '{branch}' already exists in {into}; choose another "
                          "branch or set overwrite")


def push_decision(policy: ToolPolicy, remote: str, branch: str, *, by_human: bool) -> PolicyDecision:
    """Whether the tool policy lets the branch be pushed.

    Deny rules (``denied_operations``, ``deny`` command rules) always win. A
    push needs approval by default (``approval_operations`` ``*:push``, the
    ``push`` command rule): a person running ``agentic export --push`` gives it;
    a flow run has it only where ``auto_approve`` names the operation or rule.
    """
    line = f"git push {remote} refs/heads/{branch}:refs/heads/{branch}"
    for pattern in policy.denied_operations:
        if fnmatch.fnmatchcase(PUSH_OPERATION, pattern):
            return PolicyDecision(PUSH_OPERATION, False, f"denied_operations:{pattern}",
                                  f"operation '{PUSH_OPERATION}' is denied")
    command = check_command(policy, line, approved=True)
    if not command.allowed:
        return command
    if by_human:
        return PolicyDecision(PUSH_OPERATION, True)
    needs = [f"operation {PUSH_OPERATION}" for p in policy.approval_operations
             if fnmatch.fnmatchcase(PUSH_OPERATION, p)][:1]
    needs += [rule.name for rule in policy.command_rules if rule.action == "approve" and rule.matches(line)]
    missing = [rule for rule in needs if not any(
        fnmatch.fnmatchcase(rule.removeprefix("operation "), p) or fnmatch.fnmatchcase(PUSH_OPERATION, p)
        for p in policy.auto_approve)]
    if missing:
        return PolicyDecision(PUSH_OPERATION, False, missing[0],
                              f"pushing needs a person's approval ({', '.join(missing)}); add "
                              f"'{PUSH_OPERATION}' to the policy's auto_approve, or push with `agentic export --push`")
    return PolicyDecision(PUSH_OPERATION, True)


def push_branch(into: Path, remote: str, branch: str) -> None:
    """Push ``branch`` of ``into`` to the same name on ``remote``; never forced."""
    if not remote or remote.startswith("-"):
        raise ExportError(f"'{remote}' is not a remote name")
    ref = f"refs/heads/{branch}"
    try:
        _git(into, "push", "--quiet", "--porcelain", remote, f"{ref}:{ref}")
    except ExportError as exc:
        raise ExportError(f"push of branch '{branch}' to remote '{remote}' failed: {exc}") from None


def run_snapshot(records: list[Any]) -> tuple[Path, str, str, str]:
    """(workspace, final snapshot, plan id, status) of a run, from its audit records."""
    started = next((r.data for r in records if r.kind == "run_started"), None)
    finished = [r.data for r in records if r.kind == "run_finished" and r.data.get("final_snapshot")]
    if started is None:
        raise ExportError("the run's audit log has no run_started record")
    if not finished:
        raise ExportError("the run has no final snapshot yet (it is still going, waiting, or crashed "
                          "before its steps ended)")
    last = finished[-1]
    return Path(started["workspace"]), str(last["final_snapshot"]), str(started["plan_id"]), str(last["status"])


def _check_repository(into: Path) -> None:
    if not into.is_dir():
        raise ExportError(f"{into} does not exist")
    try:
        top = _git(into, "rev-parse", "--show-toplevel", "--is-bare-repository")
    except ExportError:
        raise ExportError(f"{into} is not a git repository") from None
    if not top:
        raise ExportError(f"{into} is not a git repository")


def _check_branch_name(into: Path, branch: str) -> None:
    try:
        _git(into, "check-ref-format", "--branch", branch)
    except ExportError:
        raise ExportError(f"'{branch}' is not a valid branch name") from None
    if branch.startswith("-"):
        raise ExportError(f"'{branch}' is not a valid branch name")


def _current(into: Path, ref: str) -> str | None:
    try:
        return _git(into, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}") or None
    except ExportError:
        return None


def _checked_out(into: Path) -> set[str]:
    """Branches checked out in any worktree of the repository."""
    listing = _git(into, "worktree", "list", "--porcelain")
    return {line.removeprefix("branch ") for line in listing.splitlines() if line.startswith("branch ")}


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], check=False, capture_output=True, text=True,
                          env={**os.environ, "GIT_TERMINAL_PROMPT": "0"}, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise ExportError(" ".join((done.stderr or done.stdout).split()) or f"git {args[0]} failed")
    return done.stdout.strip()
