"""The ``git`` tool: status, diff, branch and commit in the run workspace.

It runs host-side git on the run's private clone (never the user's
repository), with hooks and foreign configuration disabled. Commits are
deterministic: the given identity and the parent commit's timestamp.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from git import GitCommandError
from pydantic import Field, field_validator, model_validator

from prefect_agentic.errors import ToolError
from prefect_agentic.tools.base import Tool, ToolContext, ToolInput, ToolOutput
from prefect_agentic.workspace import commit_identity, run_git

_BRANCH = re.compile(r"^(?!.*\.\.)(?!/)(?!.*//)[A-Za-z0-9._/-]+(?<![./])$")


class GitInput(ToolInput):
    op: Literal["status", "diff", "branch", "commit"]
    branch: str | None = Field(
        default=None,
        description="branch: the branch to create or move to HEAD; commit: a branch to move to the new commit.",
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
        if self.op == "branch" and not self.branch:
            raise ValueError("op 'branch' needs a branch name")
        return self


class GitOutput(ToolOutput):
    changed_files: list[str] = Field(default_factory=list)
    diff: str = ""
    branch: str | None = None
    commit: str | None = None


class GitTool(Tool):
    """Inspect and record changes in the run workspace."""

    name: ClassVar[str] = "git"
    version: ClassVar[str] = "1.1.0"
    description: ClassVar[str] = "status, diff, branch or commit in the run workspace."
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

    def run(self, args: GitInput, ctx: ToolContext) -> Mapping[str, Any]:
        def git(*cmd: str, env: dict[str, str] | None = None) -> str:
            try:
                return run_git(ctx.workspace, *cmd, env=env)
            except GitCommandError as exc:
                raise ToolError(f"git {cmd[0]} failed: {exc.stderr.strip() or exc}") from None

        status = git("status", "--porcelain=v1", "-z", "--untracked-files=all")
        changed = sorted({entry[3:] for entry in status.split("\0") if len(entry) > 3})
        result: dict[str, Any] = {"exit_code": 0, "changed_files": changed}
        if args.op == "diff":
            against = ctx.base_snapshot if args.against == "@base" else args.against
            git("add", "--all", "--intent-to-add")
            diff = git("diff", "--no-color", against)
            result["diff"] = diff[: args.max_diff_bytes]
        elif args.op == "branch":
            git("branch", "--force", args.branch or "", "HEAD")
            result["branch"] = args.branch
        elif args.op == "commit":
            result.update(self._commit(args, git, ctx.base_snapshot))
        result["log"] = "\n".join(changed)
        return result

    @staticmethod
    def _commit(args: GitInput, git: Any, base: str) -> dict[str, Any]:
        git("add", "--all")
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
