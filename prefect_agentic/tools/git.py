"""The ``git`` tool: status, diff, branch, commit and push in the run workspace.

It runs host-side git on the run's private clone (never the user's
repository), with hooks and foreign configuration disabled. Commits are
deterministic: the given identity and the parent commit's timestamp.

``push`` happens here, host-side, and not in the sandbox: the sandbox has no
network and no path to the remote, and giving it both (and the token) would
hand them to the very commands the sandbox exists to contain. Host-side git
only sends objects of the run workspace, whose ``.git`` the sandbox cannot
write (no hooks, no configuration a command could plant), and runs nothing of
the repository. The remote's URL and token are step secrets: they reach git
through its environment (``remote.<name>.url``, an HTTP header), never its
command line, and are redacted from everything the step reports.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from git import GitCommandError
from pydantic import Field, field_validator, model_validator

from prefect_agentic.errors import ToolError
from prefect_agentic.secrets import Redactor
from prefect_agentic.tools.base import Tool, ToolContext, ToolInput, ToolOutput
from prefect_agentic.workspace import (
    WORKTREE_PATHSPEC,
    commit_identity,
    refuse_embedded_repositories,
    run_git,
    stage_worktree,
)

if TYPE_CHECKING:
    from prefect_agentic.plan.models import Plan, Step

PUSH_REMOTE = "agentic-push"
"""Name of the remote a push goes to; its URL comes from a secret, through the environment."""
_PUSH_FLAGS = {" ": "fast-forward", "+": "forced update", "-": "deleted", "*": "new branch",
               "=": "up to date"}

_BRANCH = re.compile(r"^(?!.*\.\.)(?!/)(?!.*//)[A-Za-z0-9._/-]+(?<![./])$")


class GitInput(ToolInput):
    op: Literal["status", "diff", "branch", "commit", "push"]
    branch: str | None = Field(
        default=None,
        description="branch: the branch to create or move to HEAD; commit: a branch to move to the new "
        "commit; push: the remote branch HEAD is pushed to.",
    )
    remote_secret: str | None = Field(
        default=None,
        description="push: the step secret holding the remote's URL (it never appears in args or output).",
    )
    token_secret: str | None = Field(
        default=None, description="push: a step secret with a token for an HTTPS remote (sent as a header).",
    )
    message: str | None = Field(default=None, description="Commit message (op 'commit').")
    against: str = Field(
        default="@base",
        description="diff: what to compare the worktree with; '@base' is the run's starting commit.",
    )
    onto: str = Field(
        default="HEAD",
        description="commit: the new commit's parent; '@base' squashes the run's changes (all its "
        "snapshots) into one commit on the run's starting commit.",
    )
    author_name: str = "prefect-agentic"
    author_email: str = "agentic@prefect-agentic.invalid"
    max_diff_bytes: int = Field(default=200_000, ge=1000)

    @field_validator("branch")
    @classmethod
    def _valid_branch(cls, value: str | None) -> str | None:
        if value is not None and not _BRANCH.match(value):
            raise ValueError(f"'{value}' is not a valid branch name")
        return value

    @model_validator(mode="after")
    def _needs(self) -> GitInput:
        if self.op == "commit" and not self.message:
            raise ValueError("op 'commit' needs a message")
        if self.op in ("branch", "push") and not self.branch:
            raise ValueError(f"op '{self.op}' needs a branch name")
        if self.op == "push" and not self.remote_secret:
            raise ValueError("op 'push' needs remote_secret, the secret holding the remote's URL")
        return self


class GitOutput(ToolOutput):
    changed_files: list[str] = Field(default_factory=list)
    diff: str = ""
    branch: str | None = None
    commit: str | None = None
    pushed: str | None = Field(default=None, description="push: new branch, fast-forward or up to date.")


class GitTool(Tool):
    """Inspect and record changes in the run workspace."""

    name: ClassVar[str] = "git"
    version: ClassVar[str] = "1.2.0"
    description: ClassVar[str] = "status, diff, branch, commit or push in the run workspace."
    Input: ClassVar[type[ToolInput]] = GitInput
    Output: ClassVar[type[ToolOutput]] = GitOutput
    default_success: ClassVar[Mapping[str, Any]] = {"exit_code": 0}

    @classmethod
    def changes_files(cls, args: ToolInput) -> bool:
        return isinstance(args, GitInput) and args.op == "commit"

    @classmethod
    def operation(cls, args: ToolInput) -> str:
        assert isinstance(args, GitInput)
        return args.op

    @classmethod
    def command_preview(cls, args: ToolInput) -> str | None:
        assert isinstance(args, GitInput)
        if args.op != "push":
            return None
        return f"git push {PUSH_REMOTE} HEAD:refs/heads/{args.branch}"

    @classmethod
    def known_failure(cls, plan: Plan, step: Step) -> str | None:
        """A commit that can only find "nothing to commit".

        Every step starts from a clean checkout of its snapshot, with HEAD at that
        snapshot, so a commit ``onto: HEAD`` never has changes to record; one
        ``onto: '@base'`` has none when no step before it writes the workspace.
        """
        from prefect_agentic.plan.graph import snapshot_sources

        args = cls.parse_args(step.args)
        assert isinstance(args, GitInput)
        if args.op != "commit":
            return None
        if args.onto == "HEAD":
            return ("args.onto: a commit onto HEAD always finds nothing to commit: the step starts "
                    "from a clean checkout of its snapshot, so its worktree equals HEAD; use "
                    "onto: '@base' to commit the changes of the steps it depends on")
        if args.onto == "@base" and snapshot_sources(plan.steps)[step.id] is None:
            return ("depends_on: a commit onto '@base' would find nothing to commit: no step it "
                    "depends on (directly or not) writes the workspace; make it depend on the "
                    "step that makes the changes")
        return None

    def run(self, args: GitInput, ctx: ToolContext) -> Mapping[str, Any]:
        def git(*cmd: str, env: dict[str, str] | None = None) -> str:
            with _as_tool_error(cmd[0]):
                return run_git(ctx.workspace, *cmd, env=env)

        def stage(*options: str) -> None:
            with _as_tool_error("add"):
                stage_worktree(ctx.workspace, *options)

        refuse_embedded_repositories(ctx.workspace)  # git would enter one and obey its config
        status = git("status", "--porcelain=v1", "-z", "--untracked-files=all", *WORKTREE_PATHSPEC)
        changed = sorted({entry[3:] for entry in status.split("\0") if len(entry) > 3})
        result: dict[str, Any] = {"exit_code": 0, "changed_files": changed}
        if args.op == "diff":
            against = ctx.base_snapshot if args.against == "@base" else args.against
            stage("--intent-to-add")
            diff = git("diff", "--no-color", against)
            result["diff"] = diff[: args.max_diff_bytes]
        elif args.op == "branch":
            git("branch", "--force", args.branch or "", "HEAD")
            result["branch"] = args.branch
        elif args.op == "commit":
            stage()
            result.update(self._commit(args, git, ctx.base_snapshot))
        elif args.op == "push":
            result.update(_push(args, ctx))
        result["log"] = "\n".join(changed)
        return result

    @staticmethod
    def _commit(args: GitInput, git: Any, base: str) -> dict[str, Any]:
        parent = git("rev-parse", base if args.onto == "@base" else f"{args.onto}^{{commit}}")
        tree = git("write-tree")
        if tree == git("rev-parse", f"{parent}^{{tree}}"):
            raise ToolError(f"nothing to commit: the worktree equals {args.onto}")
        env = commit_identity(git("show", "-s", "--format=%cI", parent))
        env.update(GIT_AUTHOR_NAME=args.author_name, GIT_AUTHOR_EMAIL=args.author_email)
        sha = git("commit-tree", tree, "-p", parent, "-m", args.message or "", env=env)
        git("update-ref", "--no-deref", "HEAD", sha)
        if args.branch:
            git("update-ref", f"refs/heads/{args.branch}", sha)
        return {"commit": sha, "branch": args.branch}


@contextmanager
def _as_tool_error(command: str) -> Iterator[None]:
    """A failed git command as the tool's own error, with git's message."""
    try:
        yield
    except GitCommandError as exc:
        raise ToolError(f"git {command} failed: {exc.stderr.strip() or exc}") from None


def _push(args: GitInput, ctx: ToolContext) -> dict[str, Any]:
    """Push HEAD to ``refs/heads/<branch>`` of the remote; never forced."""
    url = ctx.secret(args.remote_secret or "")
    config = {f"remote.{PUSH_REMOTE}.url": url}
    if args.token_secret:
        basic = base64.b64encode(f"x-access-token:{ctx.secret(args.token_secret)}".encode()).decode()
        config["http.extraHeader"] = f"Authorization: Basic {basic}"
    env = {"GIT_CONFIG_COUNT": str(len(config))}
    for index, (key, value) in enumerate(config.items()):
        env.update({f"GIT_CONFIG_KEY_{index}": key, f"GIT_CONFIG_VALUE_{index}": value})
    head = run_git(ctx.workspace, "rev-parse", "HEAD")
    ref = f"refs/heads/{args.branch}"
    try:
        out = run_git(ctx.workspace, "push", "--porcelain", PUSH_REMOTE, f"{head}:{ref}", env=env,
                      timeout=max(1.0, ctx.remaining()))
    except GitCommandError as exc:
        said = Redactor([*ctx.env.values(), *config.values()]).text(
            f"{_captured(exc.stdout)}\n{_captured(exc.stderr)}")
        raise ToolError(f"git push of {head[:12]} to branch '{args.branch}' failed: "
                        f"{_push_problem(said)}") from None
    flags = [line[0] for line in out.splitlines() if f":{ref}\t" in line]
    return {"commit": head, "branch": args.branch,
            "pushed": _PUSH_FLAGS.get(flags[0] if flags else " ", "pushed")}


def _captured(text: str | None) -> str:
    """What git printed, without gitpython's ``stderr: '…'`` wrapping."""
    text = (text or "").strip()
    for prefix in ("stdout: '", "stderr: '"):
        if text.startswith(prefix):
            return text[len(prefix):].removesuffix("'")
    return text


def _push_problem(said: str) -> str:
    """The line of git's answer that says why, with a hint for the usual cause."""
    for line in said.splitlines():
        if line.startswith("!"):
            why = line.rsplit("\t", 1)[-1].strip()
            hint = ("; the remote branch has commits this run does not have (pushes are never forced)"
                    if "fetch first" in why or "non-fast-forward" in why else "")
            return f"rejected: {why}{hint}"
    lines = [line.strip() for line in said.splitlines() if line.strip() and line.strip() != "Done"]
    return "; ".join(lines[-3:]) or "no reason given"
