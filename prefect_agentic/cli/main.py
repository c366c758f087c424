"""`agentic`: run, validate and describe plans from the command line.

Exit codes: 0 success; 1 the plan ran and failed; 2 bad input (plan file,
flags, repository, run id); 3 the environment is not ready (Docker engine, image, Prefect
API). ``cli/errors.py`` maps what escapes a command to these codes, in one line.
"""

from __future__ import annotations

import os
import sys

from prefect_agentic.cli.startup import (  # the clock starts before Prefect's import
    RunClock,
    start_embedded_api,
)

# The run's own progress display replaces Prefect's console log lines (the logs
# still reach the Prefect API); `agentic -v` brings them back. Workers keep them:
# their console log is what a platform team reads, as with `prefect worker start`.
# Prefect reads these when it is imported, so they are set first.
_QUIETED = "AGENTIC_QUIETED_PREFECT_CONSOLE"  # set with the level, so a worker started by us can undo it
if {"worker", "task-worker"} & set(sys.argv[1:2]):
    if os.environ.pop(_QUIETED, None):
        os.environ.pop("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", None)
elif not {"-v", "--verbose"} & set(sys.argv[1:2]) and "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL" not in os.environ:
    os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "CRITICAL"
    os.environ[_QUIETED] = "1"
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Prefect gives its embedded API 20 s to start; a busy 2-core machine needs more
# (seen at load 12-20). A user's own setting wins.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

import json  # noqa: E402
from enum import Enum  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Annotated, Optional, TypeVar  # noqa: E402

import typer  # noqa: E402
from prefect.blocks.core import Block  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402

from prefect_agentic.blocks.budget import Budget  # noqa: E402
from prefect_agentic.blocks.gate_defaults import GateDefaults  # noqa: E402
from prefect_agentic.blocks.llm_endpoint import LLMEndpoint  # noqa: E402
from prefect_agentic.blocks.tool_policy import ToolPolicy  # noqa: E402
from prefect_agentic.cli.render import ProgressDisplay, report_table  # noqa: E402
from prefect_agentic.errors import AgenticError, PlanError, SandboxError, WorkspaceError  # noqa: E402
from prefect_agentic.loop.settings import LoopSettings  # noqa: E402
from prefect_agentic.plan import load_plan, plan_json_schema  # noqa: E402
from prefect_agentic.plan.models import Plan  # noqa: E402
from prefect_agentic.tools.registry import default_registry  # noqa: E402

if TYPE_CHECKING:
    from prefect_agentic.blocks.sandbox_settings import SandboxSettings

BlockT = TypeVar("BlockT", bound="Block")

app = typer.Typer(
    name="agentic",
    help="Run agentic software-development plans as Prefect flows with sandboxed steps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 160)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Show Prefect's log lines too.")] = False,
) -> None:
    """Run agentic software-development plans as Prefect flows with sandboxed steps."""


class SandboxMode(str, Enum):
    per_step = "per_step"
    warm = "warm"


class OnUpgrade(str, Enum):
    """The run's upgrade policy (``prefect_agentic.pins``)."""

    pinned = "pinned"
    upgrade = "upgrade"


ON_UPGRADE_HELP = ("When the run is resumed where a version it pinned is gone: stop (pinned) or go on "
                   "with the installed version (upgrade).")


class StepsOnChoice(str, Enum):
    """Where the run's steps execute (``flows/run_plan.py``)."""

    local = "local"
    task_workers = "task-workers"


STEPS_ON_HELP = ("Run steps here (local) or on `agentic task-worker`s through a Prefect server, "
                 "snapshots travelling through AGENTIC_SNAPSHOT_REMOTE (task-workers).")


def _plan_goal(goal: str | None, loop: LoopSettings | None, policy: ToolPolicy | None) -> Plan:
    """A plan for ``goal`` from the loop's model (its request is a durable, cached model call)."""
    from prefect_agentic.errors import LLMError
    from prefect_agentic.planners.llm import LLMPlanner

    assert goal is not None and loop is not None and loop.llm is not None
    try:
        return LLMPlanner(loop.llm, policy=policy, max_attempts=loop.planner_attempts).plan(goal)
    except LLMError as exc:
        raise _fail(f"--goal: {exc}", 1) from None


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


POLICY_HELP = "Name of a saved Agentic Tool Policy block (default: the built-in policy)."
BUDGET_HELP = "Name of a saved Agentic Budget block (default: unlimited)."
GOAL_HELP = ("Instead of a plan file: the goal in plain words, planned by the --llm-block model "
             "(a durable model call: running the same goal again takes the same plan).")
REPLAN_HELP = "Name of a saved Agentic LLM Endpoint block: a failed step is re-planned with it."
GATE_HELP = "Name of a saved Agentic Gate Defaults block (approval timeouts, poll interval, mode)."
WORKSPACE_SIZE_HELP = ("Size limit of the run's workspace, e.g. 8g (overrides the block); `none`: no limit, "
                       "for where it cannot be enforced (not root): the run logs and audits that choice.")
CHAOS_HELP = "Inject faults: a chaos spec file (YAML/JSON) or inline JSON (see docs/guides/chaos.md)."
ESCALATE_HELP = ("When re-planning cannot help, pause the flow run until a human answers "
                 "retry, skip, abort or instruct (needs a Prefect server).")


def _workspace_size(value: str) -> str | None:
    """``--workspace-size``: a size as the block takes it, or ``none`` for no limit."""
    from prefect_agentic.workspace import parse_size

    if value.strip().lower() in ("none", ""):
        return None
    try:
        parse_size(value)
    except ValueError as exc:
        raise _fail(f"--workspace-size: {exc}, or none for no limit", 2) from None
    return value


def _load_block(option: str, kind: type[BlockT], name: str | None) -> BlockT:
    """A saved block by name, or the block's defaults; a bad name is a usage error (exit 2)."""
    if name is None:
        return kind()
    try:
        return kind.load(name)
    except ValueError as exc:
        raise _fail(f"{option} {name}: {exc}", 2) from None


@app.command()
def validate(
    plan_file: Annotated[Path, typer.Argument(help="Plan file (YAML or JSON).")],
    policy_block: Annotated[Optional[str], typer.Option(help=POLICY_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable result.")] = False,
) -> None:
    """Check a plan file without running it (also against the tool policy)."""
    try:
        plan = load_plan(plan_file, policy=_load_block("--policy-block", ToolPolicy, policy_block))
    except PlanError as exc:
        if as_json:
            out.print_json(json.dumps({"valid": False, "source": exc.source, "problems": exc.problems,
                                       "lines": exc.lines}))
            raise typer.Exit(2) from None
        raise _fail(str(exc), 2) from None
    if as_json:
        out.print_json(json.dumps({"valid": True, "plan": plan.id, "steps": len(plan.steps)}))
    else:
        out.print(f"{plan_file}: valid plan '{plan.id}' v{plan.version} with {len(plan.steps)} steps")


@app.command()
def schema(
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Write to a file.")] = None,
) -> None:
    """Print the JSON Schema of plan files (for editor validation)."""
    text = json.dumps(plan_json_schema(), indent=2) + "\n"
    if output:
        output.write_text(text)
        err.print(f"wrote {output}")
    else:
        typer.echo(text, nl=False)


@app.command()
def tools(
    mcp: Annotated[Optional[str], typer.Option(
        "--mcp", help="List the tools of this MCP server instead: an http(s) URL, or the command line "
                      "of a stdio server (started in a sandbox container, like a step would).")] = None,
    repo: Annotated[Path, typer.Option(
        help="With a stdio --mcp server: the repository whose committed files are its workspace.")] = Path("."),
    sandbox_block: Annotated[
        Optional[str], typer.Option(help="Name of a saved Agentic Sandbox Settings block.")
    ] = None,
    image: Annotated[Optional[str], typer.Option(help="Sandbox image (overrides the block).")] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds the server has to answer.")] = 60,
) -> None:
    """List the registered tools with their versions, or the tools of an MCP server."""
    if mcp is None:
        for tool in default_registry():
            out.print(f"[bold]{tool.name}[/] v{tool.version}  {tool.description}")
        return
    from prefect_agentic.blocks.sandbox_settings import SandboxSettings
    from prefect_agentic.tools.mcp.discover import list_server_tools

    settings = _load_block("--sandbox-block", SandboxSettings, sandbox_block)
    if image:
        settings = settings.model_copy(update={"image": image})
    try:
        found = list_server_tools(mcp, repo=repo, settings=settings, timeout=timeout)
    except AgenticError as exc:
        raise _fail(str(exc), 1) from None
    for info in found:
        typer.echo(f"{info.name}  {' '.join((info.description or '').split())}".rstrip())
        typer.echo(f"  input: {json.dumps(info.input_schema, sort_keys=True)}")


@app.command()
def run(
    plan_file: Annotated[Optional[Path], typer.Argument(help="Plan file (YAML or JSON).")] = None,
    goal: Annotated[Optional[str], typer.Option(help=GOAL_HELP)] = None,
    repo: Annotated[Path, typer.Option(help="Git repository to work on (only read).")] = Path("."),
    ref: Annotated[str, typer.Option(help="Commit, branch or tag to start from.")] = "HEAD",
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Steps run at once.")] = 4,
    sandbox_block: Annotated[
        Optional[str], typer.Option(help="Name of a saved Agentic Sandbox Settings block.")
    ] = None,
    policy_block: Annotated[Optional[str], typer.Option(help=POLICY_HELP)] = None,
    budget_block: Annotated[Optional[str], typer.Option(help=BUDGET_HELP)] = None,
    mode: Annotated[Optional[SandboxMode], typer.Option(help="Container per step, or one warm container.")] = None,
    image: Annotated[Optional[str], typer.Option(help="Sandbox image (overrides the block).")] = None,
    workspace_size: Annotated[Optional[str], typer.Option(help=WORKSPACE_SIZE_HELP)] = None,
    fresh: Annotated[bool, typer.Option(help="Ignore cached step results; run every step.")] = False,
    llm_block: Annotated[Optional[str], typer.Option(help=REPLAN_HELP)] = None,
    max_replans: Annotated[int, typer.Option(min=0, max=20, help="Re-plans per run at most.")] = 2,
    escalate: Annotated[bool, typer.Option(help=ESCALATE_HELP)] = False,
    gate_block: Annotated[Optional[str], typer.Option(help=GATE_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run report as JSON.")] = False,
    chaos: Annotated[Optional[str], typer.Option(help=CHAOS_HELP)] = None,
    chaos_block: Annotated[Optional[str], typer.Option(help="Name of a saved Agentic Chaos Settings block.")] = None,
    on_upgrade: Annotated[OnUpgrade, typer.Option(help=ON_UPGRADE_HELP)] = OnUpgrade.pinned,
    steps_on: Annotated[StepsOnChoice, typer.Option(help=STEPS_ON_HELP)] = StepsOnChoice.local,
) -> None:
    """Run a plan on a git repository; completed steps of earlier runs come from the cache."""
    from prefect.task_runners import ThreadPoolTaskRunner

    from prefect_agentic.blocks.chaos_settings import ChaosSettings
    from prefect_agentic.blocks.sandbox_settings import SandboxSettings
    from prefect_agentic.chaos import load_chaos_spec
    from prefect_agentic.chaos.spec import ChaosSpecError
    from prefect_agentic.cli.approvals import answer_in_terminal
    from prefect_agentic.cli.interrupt import interrupt_handler
    from prefect_agentic.errors import PlanRunFailed
    from prefect_agentic.flows.run_plan import run_plan
    from prefect_agentic.gates.notice import watch_gates
    from prefect_agentic.record.progress import subscribe
    from prefect_agentic.sandbox.runner import check_ready
    from prefect_agentic.settings import embedded_run_settings
    from prefect_agentic.workspace import resolve_base

    clock = RunClock()
    policy = _load_block("--policy-block", ToolPolicy, policy_block)
    budget = _load_block("--budget-block", Budget, budget_block)
    loop = None
    if llm_block or escalate:
        llm = _load_block("--llm-block", LLMEndpoint, llm_block) if llm_block else None
        loop = LoopSettings(llm=llm, max_replans=max_replans, escalate=escalate)
    if (plan_file is None) == (goal is None):
        raise _fail("give a plan file or --goal (with --llm-block), not both or neither", 2)
    if goal is not None and loop is None or goal is not None and loop.llm is None:
        raise _fail("--goal needs --llm-block: the model that writes the plan", 2)
    try:
        plan = load_plan(plan_file, policy=policy) if plan_file else _plan_goal(goal, loop, policy)
        chaos_spec = load_chaos_spec(chaos) if chaos else None
        if chaos_block:
            if chaos_spec is not None:
                raise ChaosSpecError("give --chaos or --chaos-block, not both")
            chaos_spec = _load_block("--chaos-block", ChaosSettings, chaos_block).spec()
        resolve_base(repo.resolve(), ref)
        settings = SandboxSettings.load(sandbox_block) if sandbox_block else SandboxSettings()
        if mode:
            settings.mode = mode.value
        if image:
            settings.image = image
        if workspace_size is not None:
            settings.workspace_size = _workspace_size(workspace_size)
        check_ready(settings)
    except (PlanError, WorkspaceError, ChaosSpecError) as exc:
        raise _fail(str(exc), 2) from None
    except SandboxError as exc:
        raise _fail(str(exc), 3) from None
    except ValueError as exc:  # e.g. no block of that name
        raise _fail(f"--sandbox-block {sandbox_block}: {exc}", 2) from None

    gates = _load_block("--gate-block", GateDefaults, gate_block)
    clock.mark("plan")
    start_embedded_api(err, clock, show=not as_json)
    display = ProgressDisplay(plan, err, enabled=not as_json)
    unsubscribe = subscribe(display.on_event)
    # a terminal asks the approver itself; elsewhere (CI, a pipe) the run says where to answer
    stop_asking = (answer_in_terminal(err, display.quiet) if sys.stdin.isatty()
                   else watch_gates(lambda notice: err.print(notice.text(), highlight=False, soft_wrap=True)))
    flow = run_plan.with_options(task_runner=ThreadPoolTaskRunner(max_workers=concurrency))
    interrupts = _Interrupts(settings)
    try:
        with display, embedded_run_settings(), interrupt_handler(interrupts.first, interrupts.second):
            state = flow(plan=plan, repo=str(repo.resolve()), ref=ref, sandbox=settings, fresh=fresh,
                         policy=policy, budget=budget, loop=loop, gates=gates, chaos=chaos_spec,
                         on_upgrade=on_upgrade.value, steps_on=steps_on.value, return_state=True)
    finally:
        unsubscribe()
        stop_asking()
    clock.mark("run")
    outcome = state.result(raise_on_failure=False)
    report = outcome.report if isinstance(outcome, PlanRunFailed) else outcome
    if isinstance(outcome, BaseException) and not isinstance(outcome, PlanRunFailed):
        code = 3 if isinstance(outcome, SandboxError) else 2 if isinstance(outcome, AgenticError) else 1
        raise _fail(f"run did not start its steps: {outcome}", code)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        out.print(report_table(report, wall=clock.summary(report.duration_s)), soft_wrap=True)  # paths stay whole
    raise typer.Exit(0 if report.ok else 1)


class _Interrupts:
    """What Ctrl-C does during a run: the first unwinds it, the second quits at once."""

    def __init__(self, settings: "SandboxSettings") -> None:
        self.settings = settings
        self.run_keys: list[str] = []

    def first(self) -> None:
        from prefect_agentic.executor import open_run_keys

        self.run_keys = open_run_keys()
        err.print("\ninterrupted: cancelling the run and removing its containers "
                  "(Ctrl-C again to quit at once)", highlight=False)

    def second(self) -> None:
        from prefect_agentic.sandbox.runner import remove_run_containers

        client = self.settings.docker_host.get_client()
        for key in self.run_keys:
            remove_run_containers(client, key)


from prefect_agentic.cli import approvals as _approvals  # noqa: E402
from prefect_agentic.cli import audit as _audit  # noqa: E402
from prefect_agentic.cli import canaries as _canaries  # noqa: E402
from prefect_agentic.cli import chaos as _chaos  # noqa: E402
from prefect_agentic.cli import deploy as _deploy  # noqa: E402
from prefect_agentic.cli import export as _export  # noqa: E402
from prefect_agentic.cli import llm as _llm  # noqa: E402
from prefect_agentic.cli import recipes as _recipes  # noqa: E402
from prefect_agentic.cli import upgrade as _upgrade  # noqa: E402
from prefect_agentic.cli import worker as _worker  # noqa: E402

_recipes.register(app)
_llm.register(app)
_approvals.register(app)
_audit.register(app)
_deploy.register(app)
_export.register(app)
_canaries.register(app)
_chaos.register(app)
_worker.register(app)
_upgrade.register(app)

if __name__ == "__main__":
    from prefect_agentic.cli.errors import run as _run_guarded

    _run_guarded(app)
