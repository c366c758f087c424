"""The ``propose_patch`` tool: an instruction and some files in, a unified diff applied out.

A language model (an LLM endpoint block, by name) reads the instruction and
the files and answers with a unified diff. The diff is applied inside the
sandbox with ``git apply`` on the worktree (never the index: ``.git`` is
read-only there), so a diff cannot reach beyond ``/workspace``. A diff that
does not apply goes back to the model with git's complaint; when the answers
are used up the step fails with an error naming the hunk that did not apply.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, field_validator

from prefect_agentic.blocks.llm_endpoint import LLMEndpoint
from prefect_agentic.boundary import WorkspaceFiles
from prefect_agentic.errors import (
    LLMOutputError,
    PatchRejectedError,
    ToolError,
    WorkspaceBoundaryError,
)
from prefect_agentic.tools.base import Tool, ToolContext, ToolInput, ToolOutput

if TYPE_CHECKING:
    from pydantic_ai import Agent

SYSTEM_PROMPT = """\
You change code in a git repository. You get an instruction and the current content of the
relevant files. Answer with a JSON object {"summary": "...", "diff": "..."}: "summary" says in
one sentence what you changed, "diff" is a unified diff in `git diff` format that makes the
change (paths relative to the repository root with a/ and b/ prefixes, three lines of
context, exact copies of the current lines). Change nothing the instruction does not ask for.
"""

ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"summary": {"type": "string"}, "diff": {"type": "string"}},
    "required": ["summary", "diff"],
    "additionalProperties": False,
}
APPLY_SCRIPT = (
    'git apply --recount --check --verbose "$1" && git apply --recount --numstat "$1" '
    '&& git apply --recount "$1"'
)
_FAILED_AT = re.compile(r"patch failed: (.+):(\d+)")
_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+\d+(?:,\d+)? @@")


class ProposePatchInput(ToolInput):
    instruction: str = Field(min_length=1, description="What to change, in plain words.")
    files: list[str] = Field(
        default_factory=list, max_length=20,
        description="Workspace-relative paths whose current content the model sees.",
    )
    endpoint: str = Field(min_length=1, description="Name of a saved 'Agentic LLM Endpoint' block.")
    attempts: int = Field(
        default=2, ge=1, le=5,
        description="Answers to ask for; a diff that does not apply is sent back with git's error.",
    )
    max_file_bytes: int = Field(default=100_000, ge=1, description="Larger files are refused.")

    @field_validator("files")
    @classmethod
    def _relative(cls, files: list[str]) -> list[str]:
        for name in files:
            path = PurePosixPath(name)
            if path.is_absolute() or ".." in path.parts or not path.parts:
                raise ValueError(f"'{name}' must be a path inside the workspace (relative, no '..')")
        return files


class ProposePatchOutput(ToolOutput):
    summary: str
    diff: str
    files_changed: list[str]
    lines_added: int
    lines_deleted: int
    answers: int = Field(description="Model answers it took (1 = the first diff applied).")
    prompt_tokens: int
    completion_tokens: int
    cost: float


class ProposePatchTool(Tool):
    """Ask an LLM for a diff that carries out an instruction, and apply it in the sandbox."""

    name: ClassVar[str] = "propose_patch"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = "Ask an LLM for a diff that carries out an instruction; git-apply it."
    Input: ClassVar[type[ToolInput]] = ProposePatchInput
    Output: ClassVar[type[ToolOutput]] = ProposePatchOutput

    @classmethod
    def changes_files(cls, args: ToolInput) -> bool:
        return True

    def run(self, args: ProposePatchInput, ctx: ToolContext) -> Mapping[str, Any]:
        # The model layer (pydantic-ai, openai) takes about a second to import; every run loads
        # the tool registry, and only runs that ask a model for a patch should pay for it.
        from pydantic_ai import Agent, ModelRetry

        from prefect_agentic.llm.models import structured_output
        from prefect_agentic.llm.session import ModelSession

        endpoint = load_endpoint(args.endpoint)
        session = ModelSession(endpoint, purpose="patch", recorder=ctx.recorder, step_id=ctx.step_id)
        model = session.model()
        output = structured_output(model, ANSWER_SCHEMA, "patch", "A unified diff and its summary")
        agent: Agent[None, Any] = Agent(model, output_type=output, system_prompt=SYSTEM_PROMPT,
                                        retries={"output": args.attempts - 1},
                                        model_settings={"temperature": endpoint.temperature})
        applier = _Applier(ctx)

        @agent.output_validator
        def _apply(answer: Any) -> Any:
            try:
                return applier.apply(answer)
            except InvalidAnswer as exc:
                raise ModelRetry("; ".join(exc.problems)) from None

        try:
            with session.errors("patch"):
                summary, diff, numstat = agent.run_sync(_request(args, ctx.files)).output
        except LLMOutputError:
            if applier.rejection is not None:
                raise PatchRejectedError(
                    f"no proposed patch applied in {args.attempts} answer(s); last: {applier.rejection}"
                ) from None
            raise
        finally:
            ctx.guard.spend("cost", session.usage.cost)  # charged to the run's budget, even if it failed
        usage = session.usage
        return {
            "exit_code": 0, "log": summary, "summary": summary, "diff": diff,
            "files_changed": [path for _, _, path in numstat],
            "lines_added": sum(added for added, _, _ in numstat),
            "lines_deleted": sum(deleted for _, deleted, _ in numstat),
            "answers": usage.calls, "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens, "cost": usage.cost,
        }


class InvalidAnswer(Exception):
    """An answer's problems, fed back to the model."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def load_endpoint(name: str) -> LLMEndpoint:
    """The saved endpoint block ``name``, or a ToolError saying how to create it."""
    try:
        return LLMEndpoint.load(name, _sync=True)  # a worker thread of an async task
    except ValueError:
        raise ToolError(
            f"no 'Agentic LLM Endpoint' block named '{name}'; create one "
            f"(LLMEndpoint(base_url=..., model=...).save('{name}')) or fix the step's 'endpoint'"
        ) from None


def _request(args: ProposePatchInput, files: WorkspaceFiles) -> str:
    parts = [f"Instruction: {args.instruction}"]
    for name in args.files:
        parts.append(f"File {name}:\n```\n{_read(files, name, args.max_file_bytes)}```")
    return "\n\n".join(parts)


def _read(files: WorkspaceFiles, name: str, limit: int) -> str:
    """A workspace file's text, through the boundary: a link, a name leaving the workspace,
    ``.git`` or an oversized file is refused."""
    if PurePosixPath(name).parts[:1] == (".git",):
        raise ToolError(f"file '{name}' is outside the workspace")
    try:
        raw = files.read_optional(name, limit=limit)
    except WorkspaceBoundaryError as exc:
        if "limit" in str(exc):
            raise ToolError(f"file '{name}' is larger than max_file_bytes ({limit})") from None
        raise ToolError(f"file '{name}' is outside the workspace: {exc}") from None
    if raw is None:
        return "(this file does not exist yet)\n"
    text = raw.decode("utf-8", errors="replace")
    return text if text.endswith("\n") or not text else text + "\n"


class _Applier:
    """Applies each answer's diff in the sandbox; remembers why the last one was rejected."""

    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx
        self.rejection: str | None = None
        self.count = 0

    def apply(self, answer: Any) -> tuple[str, str, list[tuple[int, int, str]]]:
        if not isinstance(answer, dict) or not isinstance(answer.get("diff"), str):
            raise InvalidAnswer(['the answer must be an object with a string "diff" and "summary"'])
        diff = answer["diff"] if answer["diff"].endswith("\n") else answer["diff"] + "\n"
        if not diff.strip():
            raise InvalidAnswer(["the diff is empty; the instruction asks for a change"])
        self.count += 1
        name = f"proposed-{self.count}.diff"
        self.ctx.reports.write_text(name, diff)
        result = self.ctx.run(["sh", "-c", APPLY_SCRIPT, "sh", f"{self.ctx.report_dir_in_sandbox}/{name}"])
        if result.exit_code != 0:
            self.rejection = rejection(diff, result.stderr or result.stdout)
            raise InvalidAnswer([self.rejection])
        return str(answer.get("summary") or ""), diff, _numstat(result.stdout)


def rejection(diff: str, git_error: str) -> str:
    """Why git refused ``diff``, naming the hunk (``@@ -10,3 +10,4 @@ in demo/calc.py``) if it can."""
    errors = [line for line in git_error.splitlines() if line.startswith("error:")]
    said = "; ".join(e.removeprefix("error: ") for e in errors[-2:]) or git_error.strip()[-500:]
    found = _FAILED_AT.search(git_error)
    if found:
        path, line = found.group(1), int(found.group(2))
        hunk = _hunk_header(diff, path, line)
        where = f"hunk {hunk} in {path}" if hunk else f"the hunk at line {line} of {path}"
        searched = _searched_for(git_error)
        return f"{where} does not apply: the file has no lines matching its context" + (
            f" ({searched})" if searched else "") + f"; git apply: {said}"
    return f"the diff does not apply; git apply: {said}"


def _hunk_header(diff: str, path: str, line: int) -> str | None:
    current = None
    for text in diff.splitlines():
        if text.startswith(("+++ ", "--- ")):
            name = text[4:].split("\t")[0]
            if name != "/dev/null":
                current = name[2:] if name[:2] in ("a/", "b/") else name
        elif current == path and (match := _HUNK.match(text)) and int(match.group(1)) == line:
            return text.split(" @@")[0] + " @@"
    return None


def _searched_for(git_error: str) -> str:
    lines = git_error.splitlines()
    if "error: while searching for:" not in lines:
        return ""
    start = lines.index("error: while searching for:") + 1
    wanted = [x for x in lines[start:] if not x.startswith("error:")][:3]
    return "expected " + " / ".join(repr(x) for x in wanted) if wanted else ""


def _numstat(stdout: str) -> list[tuple[int, int, str]]:
    rows = []
    for line in stdout.splitlines():
        parts = line.split("\t", 2)
        if len(parts) == 3:
            added, deleted, path = parts
            rows.append((int(added) if added.isdigit() else 0,
                         int(deleted) if deleted.isdigit() else 0, path))
    return rows
