"""Budgets: a warning at the soft limit, a clean stop at each hard limit, and resume with more."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from prefect_agentic.blocks.budget import Budget
from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.budget import BudgetMeter, BudgetWarning
from prefect_agentic.errors import BudgetExceededError, PlanRunFailed
from prefect_agentic.flows.run_plan import run_plan
from prefect_agentic.plan import parse_plan
from prefect_agentic.report import RunReport

pytestmark = pytest.mark.usefixtures("prefect_api")


def chain(*commands: str | list[str], **extra: Any) -> str:
    steps = []
    for i, command in enumerate(commands, 1):
        step: dict[str, Any] = {"id": f"s{i}", "tool": "shell", "args": {"command": command},
                                "writes_workspace": True, **extra}
        if i > 1:
            step["depends_on"] = [f"s{i - 1}"]
        steps.append(step)
    return yaml.safe_dump({"id": "budget-test", "goal": "spend", "steps": steps})


def run(text: str, repo: Path, image: str, budget: Budget, **sandbox: Any) -> RunReport:
    state = run_plan(plan=parse_plan(text), repo=str(repo), budget=budget,
                     sandbox=SandboxSettings(image=image, **sandbox), return_state=True)
    outcome = state.result(raise_on_failure=False)
    return outcome.report if isinstance(outcome, PlanRunFailed) else outcome


def statuses(report: RunReport) -> list[str]:
    return [s.status.value for s in report.steps]


WRITE = "echo {n} > f{n}.txt"


def test_reaching_max_steps_stops_the_run_and_a_larger_budget_resumes_it(make_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo(files={"README.md": "x\n"})
    text = chain(*(WRITE.format(n=n) for n in range(1, 5)))
    stopped = run(text, repo, sandbox_image, Budget(max_steps=2))
    assert statuses(stopped) == ["completed", "completed", "failed", "not_run"]
    assert "budget exhausted (steps): steps limit of 2 reached" in stopped.steps[2].reason
    assert stopped.stopped and "run it again with a larger budget" in stopped.stopped
    assert not stopped.ok
    resumed = run(text, repo, sandbox_image, Budget(max_steps=5))
    assert statuses(resumed) == ["cached", "cached", "completed", "completed"]
    uninterrupted = run(text, repo, sandbox_image, Budget())
    assert resumed.final_snapshot == uninterrupted.final_snapshot


def test_max_tool_calls_warns_first_then_stops(make_repo, sandbox_image: str,
                                              caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo(files={"README.md": "y\n"})
    caplog.set_level(logging.WARNING, logger="prefect_agentic.budget")
    report = run(chain(*(WRITE.format(n=n) for n in range(1, 5))), repo, sandbox_image,
                 Budget(max_tool_calls=3, warn_at=0.6))
    assert statuses(report) == ["completed", "completed", "completed", "failed"]
    assert "tool_calls limit of 3 reached" in report.steps[3].reason
    warnings = [r.getMessage() for r in caplog.records if r.name == "prefect_agentic.budget"]
    assert warnings == ["budget: tool_calls at 2 of 3 (67%)"]


def test_max_retries_counts_all_steps_together(make_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo(files={"README.md": "z\n"})
    text = chain("false", retries=5, retry_backoff_seconds=0, retry_jitter=0)
    report = run(text, repo, sandbox_image, Budget(max_retries=2))
    assert report.steps[0].status.value == "failed"
    assert "retries limit of 2 reached" in report.steps[0].reason
    assert report.steps[0].attempts == 4  # the first attempt, two retries, and a refused third


def test_wall_clock_limit_cuts_a_running_command_short(make_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo(files={"README.md": "w\n"})
    started = time.monotonic()
    report = run(chain("sleep 300", "true"), repo, sandbox_image, Budget(max_wall_clock_seconds=6))
    assert time.monotonic() - started < 150  # cut short long before the 300 s command ends, even when loaded
    assert statuses(report) == ["failed", "not_run"]
    assert report.stopped and "wall_clock_seconds limit of 6 reached" in report.stopped


def test_container_cpu_seconds_are_metered(make_repo, sandbox_image: str) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo(files={"README.md": "c\n"})
    # burns 2.5 CPU-seconds however busy the machine is (a timed loop gets less CPU under load)
    burn = ["python3", "-c", "import time\nwhile time.process_time() < 2.5: pass"]
    report = run(chain(burn, "true"), repo, sandbox_image, Budget(max_cpu_seconds=1.5))
    assert statuses(report) == ["completed", "not_run"]  # stopped between the steps
    assert "cpu_seconds limit of 1.5 reached" in report.stopped
    assert "cpu_seconds limit of 1.5 reached" in report.steps[1].reason


def test_cost_is_charged_after_the_fact_and_stops_the_next_call() -> None:
    warnings: list[BudgetWarning] = []
    meter = BudgetMeter(Budget(max_cost=1.0), on_warning=warnings.append)
    meter.add("cost", 0.5)
    assert warnings == []
    meter.add("cost", 0.35)
    assert [w.meter for w in warnings] == ["cost"]
    meter.add("cost", 0.2)  # the call that crossed the limit had already happened
    with pytest.raises(BudgetExceededError, match="cost limit of 1 reached"):
        meter.charge("tool_calls")
