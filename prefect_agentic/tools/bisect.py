"""The ``bisect`` tool: the first commit where a test fails, found with ``git bisect run``.

The repository's code is untrusted, and bisecting runs it at many commits, so
the whole search runs in one sandboxed command: the container makes a
repository in its own ``/tmp`` that borrows the run workspace's objects (an
alternates file pointing at the workspace's ``.git``, which is mounted
read-only), so everything bisect writes — refs, its log, checkouts — lands
there. (``git clone`` would not do: the transport it starts drops the
sandbox's ``safe.directory`` setting and refuses the workspace, which belongs
to another uid.) The container then checks that the test
fails at ``bad`` and passes at ``good``, runs ``git bisect run`` with pytest,
and runs the test once more at the first bad commit for its failure output.
The host only reads what the container wrote into the step's report directory
and looks the commit up in the workspace (author, message, diff), where the
sandbox could not have changed anything.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from git import GitCommandError
from pydantic import BaseModel, Field, field_validator

from prefect_agentic.errors import ToolError
from prefect_agentic.tools.base import Tool, ToolContext, ToolInput, ToolOutput
from prefect_agentic.workspace import run_git

CLONE = "/tmp/agentic-bisect"
# $1 good, $2 bad, $3 test node id, $4 report directory. pytest's exit codes: 0 passed,
# 1 failed, 2 interrupted (a collection error counts as a failure), 3 internal error;
# 4 and 5 (no such test) make bisect skip the commit.
BISECT_SCRIPT = f"""\
set -u
export PYTHONDONTWRITEBYTECODE=1
good=$1 bad=$2 test=$3 out=$4
rm -rf {CLONE} && git init -q {CLONE} && cd {CLONE} || exit 70
echo /workspace/.git/objects >.git/objects/info/alternates
probe() {{
  git checkout -q --force --detach "$1" && git clean -qffdx || exit 70
  python3 -m pytest -p no:cacheprovider -q "$test" >"$out/$2" 2>&1
}}
probe "$bad" bad.txt; rc=$?
case $rc in 0) exit 10;; 4|5) exit 11;; esac
probe "$good" good.txt; rc=$?
case $rc in 0) ;; 4|5) exit 13;; *) exit 12;; esac
git bisect start "$bad" "$good" >/dev/null || exit 71
git bisect run sh -c 'python3 -m pytest -p no:cacheprovider -q "$1" >/dev/null 2>&1
  rc=$?; case $rc in 0|1|2|3) exit $rc;; *) exit 125;; esac' probe "$test" >"$out/run.txt" 2>&1
git bisect log >"$out/log.txt"
first=$(sed -n 's/^\\([0-9a-f]\\{{40\\}}\\) is the first bad commit$/\\1/p' "$out/run.txt")
if [ -n "$first" ]; then probe "$first" failure.txt; fi
exit 0
"""
_SETUP_FAILURES = {
    10: "test {test} passes at bad commit {bad}: there is no failure to triage",
    11: "test {test} does not exist at bad commit {bad} (pytest found no such test)",
    12: "test {test} fails at good commit {good} too; give a good commit where it passes",
    13: "test {test} does not exist at good commit {good}; give a good commit that has it",
    70: "could not check out the workspace in the sandbox",
    71: "git bisect could not start from {good}..{bad}",
}
_PROBE = re.compile(r"^git bisect (good|bad|skip) ([0-9a-f]{40})$", re.MULTILINE)
_SHA_LINE = re.compile(r"^([0-9a-f]{40})$", re.MULTILINE)
MAX_FAILURE_OUTPUT = 20_000


class BisectInput(ToolInput):
    test: str = Field(min_length=1, description="Node id of the failing test (tests/test_x.py::test_y).")
    good: str = Field(min_length=1, description="A commit (or ref) where the test passes.")
    bad: str = Field(default="HEAD", min_length=1, description="A commit where it fails; default "
                     "the step's snapshot.")
    max_diff_bytes: int = Field(default=200_000, ge=1000)

    @field_validator("test")
    @classmethod
    def _not_an_option(cls, value: str) -> str:
        if value.startswith("-"):
            raise ValueError("a test node id, not a pytest option")
        return value


class BisectProbe(BaseModel):
    """One commit bisect tested, and what the test said there."""

    commit: str
    verdict: Literal["good", "bad", "skip"]


class BisectOutput(ToolOutput):
    test: str
    good: str = Field(description="The good commit (full id).")
    bad: str = Field(description="The bad commit (full id).")
    first_bad_commit: str | None = Field(description="None when skipped commits left several candidates.")
    candidates: list[str] = Field(default_factory=list,
                                  description="Commits that may be the first bad one, when it is not known.")
    author: str = ""
    author_email: str = ""
    authored_at: str = ""
    subject: str = ""
    message: str = ""
    diff: str = Field(default="", description="The first bad commit's change (unified diff).")
    diff_truncated: bool = False
    files_changed: list[str] = Field(default_factory=list)
    failure_output: str = Field(default="", description="pytest's output at the first bad commit.")
    probes: list[BisectProbe] = Field(default_factory=list, description="Commits tested, in order.")


class BisectTool(Tool):
    """Find the first bad commit of a failing test, bisecting in the sandbox."""

    name: ClassVar[str] = "bisect"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = "Find the commit that broke a test with git bisect run (in the sandbox)."
    Input: ClassVar[type[ToolInput]] = BisectInput
    Output: ClassVar[type[ToolOutput]] = BisectOutput
    default_success: ClassVar[Mapping[str, Any]] = {"exit_code": 0}

    def run(self, args: BisectInput, ctx: ToolContext) -> Mapping[str, Any]:
        good, bad = _commit(ctx, args.good, "good"), _commit(ctx, args.bad, "bad")
        if not _is_ancestor(ctx, good, bad):
            raise ToolError(f"good commit {args.good} ({good[:12]}) is not an ancestor of bad commit "
                            f"{args.bad} ({bad[:12]})")
        _search(ctx, args.test, good, bad)
        run_log = _report(ctx, "run.txt")
        first = _first_bad(run_log)
        found: dict[str, Any] = {
            "exit_code": 0 if first else 1, "test": args.test, "good": good, "bad": bad,
            "first_bad_commit": first, "probes": _probes(_report(ctx, "log.txt")),
            "candidates": [] if first else _SHA_LINE.findall(run_log),
        }
        if not first:
            return {**found, "log": "bisect could not decide; candidates:\n" + "\n".join(found["candidates"])}
        if _is_ancestor(ctx, first, good) or not _is_ancestor(ctx, first, bad):
            raise ToolError(f"bisect named {first[:12]}, which is not between {good[:12]} and {bad[:12]}")
        found.update(_describe(ctx, first, args.max_diff_bytes))
        found["failure_output"] = _report(ctx, "failure.txt")[-MAX_FAILURE_OUTPUT:]
        found["log"] = f"first bad commit {first[:12]} by {found['author']}: {found['subject']}"
        return found


def _search(ctx: ToolContext, test: str, good: str, bad: str) -> None:
    """Run the bisect script in the sandbox; a range it cannot search is a ToolError saying why."""
    for name in ("bad.txt", "good.txt", "run.txt", "log.txt", "failure.txt"):
        ctx.reports.unlink(name)
    result = ctx.run(["sh", "-c", BISECT_SCRIPT, "bisect", good, bad, test, ctx.report_dir_in_sandbox])
    if result.exit_code in _SETUP_FAILURES:
        said = _SETUP_FAILURES[result.exit_code].format(test=test, good=good[:12], bad=bad[:12])
        shown = next((_report(ctx, n)[-MAX_FAILURE_OUTPUT:] for n in ("good.txt", "bad.txt")
                      if ctx.reports.exists(n)), "")
        raise ToolError(said + (f"\n{shown}" if shown else "")
                        + (f"\n{result.combined_tail()}" if result.exit_code >= 70 else ""))
    if result.exit_code != 0 or not ctx.reports.exists("run.txt"):
        raise ToolError(f"bisect failed (exit code {result.exit_code}):\n{result.combined_tail()}")


def _git(ctx: ToolContext, *args: str) -> str:
    return run_git(ctx.workspace, *args)


def _commit(ctx: ToolContext, ref: str, role: str) -> str:
    try:
        return _git(ctx, "rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}")
    except GitCommandError:
        raise ToolError(f"{role} '{ref}' names no commit in the run workspace") from None


def _is_ancestor(ctx: ToolContext, older: str, newer: str) -> bool:
    try:
        _git(ctx, "merge-base", "--is-ancestor", older, newer)
        return True
    except GitCommandError:
        return False


def _first_bad(run_log: str) -> str | None:
    found = re.search(r"^([0-9a-f]{40}) is the first bad commit$", run_log, re.MULTILINE)
    return found.group(1) if found else None


def _probes(text: str) -> list[dict[str, str]]:
    return [{"commit": sha, "verdict": verdict} for verdict, sha in _PROBE.findall(text)]


def _describe(ctx: ToolContext, sha: str, max_diff: int) -> dict[str, Any]:
    """Author, message and change of ``sha``, read host-side from the workspace's own history."""
    fields = _git(ctx, "show", "-s", "--format=%an%x00%ae%x00%aI%x00%s%x00%B", sha).split("\0")
    diff = _git(ctx, "show", "--format=", "--no-color", "--patch", sha)
    files = _git(ctx, "show", "--format=", "--name-only", sha).splitlines()
    return {"author": fields[0], "author_email": fields[1], "authored_at": fields[2],
            "subject": fields[3], "message": fields[4].strip(), "diff": diff[:max_diff],
            "diff_truncated": len(diff) > max_diff, "files_changed": [f for f in files if f]}


def _report(ctx: ToolContext, name: str) -> str:
    """Report file ``name`` the bisect script wrote ("" if it wrote none), read through the boundary."""
    raw = ctx.reports.read_optional(name)
    return "" if raw is None else raw.decode("utf-8", errors="replace")
