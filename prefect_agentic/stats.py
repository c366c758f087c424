"""Workflow metrics from the Prefect API and the audit logs.

The Prefect API says which ``run-plan`` flow runs exist, when they started
and ended and in which state; each run's audit log says what its steps did
(statuses, attempts, failure kinds), how long approvals waited, and what the
run used (container CPU-seconds, LLM tokens and cost). A workflow is a plan
id. Percentiles are nearest-rank, so every figure is one a run really had.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterStartTime,
)
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import FlowRunSort
from pydantic import BaseModel, Field

from prefect_agentic.record.audit import AuditRecord, parse_log
from prefect_agentic.record.store import AuditStore

FLOW_NAME = "run-plan"
WAIT_KEYS = ("wait_seconds", "wait_s", "wait")
"""Where an approval record may carry how long it waited for its answer."""


class RunFacts(BaseModel):
    """One run, as the metrics see it."""

    flow_run_id: str
    workflow: str
    status: str
    duration_s: float | None = None
    approval_wait_s: float = 0.0
    cpu_seconds: float = 0.0
    llm_tokens: int = 0
    llm_cost: float = 0.0
    audited: bool = False
    steps: list[dict[str, Any]] = Field(default_factory=list, description="step_finished data, with step")
    failure_kinds: list[str] = Field(default_factory=list)


class Timing(BaseModel):
    mean: float | None = None
    p50: float | None = None
    p95: float | None = None


class WorkflowStats(BaseModel):
    workflow: str
    runs: int
    finished: int
    succeeded: int
    success_rate: float | None
    completion_s: Timing
    approval_wait_s: float
    cpu_seconds_per_run: float | None
    llm_tokens: int
    llm_cost: float


class StepStats(BaseModel):
    workflow: str
    step: str
    runs: int
    succeeded: int
    success_rate: float | None
    cached: int
    retries: int
    retries_per_run: float | None
    duration_s: Timing


class Stats(BaseModel):
    since: datetime | None
    workflows: list[WorkflowStats]
    steps: list[StepStats]
    failure_modes: list[dict[str, Any]]
    runs: list[RunFacts]


PAGE = 200
"""The most flow runs the Prefect API returns per request."""


async def read_flow_runs(since: datetime | None) -> list[FlowRun]:
    """``run-plan`` flow runs started since ``since`` (newest first), page by page."""
    found: list[FlowRun] = []
    run_filter = FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since)) if since else None
    async with get_client() as client:
        while True:
            page = await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])), flow_run_filter=run_filter,
                sort=FlowRunSort.START_TIME_DESC, limit=PAGE, offset=len(found))
            found += page
            if len(page) < PAGE:
                return found


def run_facts(flow_run: FlowRun, store: AuditStore) -> RunFacts:
    """What one flow run's state and audit log say about it."""
    state = flow_run.state.type.value.lower() if flow_run.state else "unknown"
    duration = None
    if flow_run.start_time and flow_run.end_time:
        duration = round((flow_run.end_time - flow_run.start_time).total_seconds(), 3)
    facts = RunFacts(flow_run_id=str(flow_run.id), workflow=flow_run.name.split(" v", 1)[0],
                     status=state, duration_s=duration)
    if store.has_log(str(flow_run.id)):
        add_audit(facts, parse_log(store.read_log(str(flow_run.id))))
    return facts


def add_audit(facts: RunFacts, records: Sequence[AuditRecord]) -> None:
    facts.audited = True
    last_error: dict[str, str] = {}
    for record in records:
        data = record.data
        if record.kind == "run_started":
            facts.workflow = data.get("plan_id", facts.workflow)
        elif record.kind == "attempt_finished" and record.step and data.get("error_kind"):
            last_error[record.step] = data["error_kind"]
        elif record.kind == "step_finished" and record.step:
            facts.steps.append({"step": record.step, **data})
            if data.get("status") == "failed":
                facts.failure_kinds.append(last_error.get(record.step, "unknown"))
        elif record.kind == "approval":
            facts.approval_wait_s += next((float(data[k]) for k in WAIT_KEYS if _number(data.get(k))), 0.0)
        elif record.kind == "budget" and data.get("source") == "llm":
            facts.llm_tokens += int(data.get("prompt_tokens", 0)) + int(data.get("completion_tokens", 0))
            facts.llm_cost += float(data.get("cost", 0.0))
        elif record.kind == "run_finished":
            facts.status = data.get("status", facts.status)
            facts.cpu_seconds = float(data.get("usage", {}).get("cpu_seconds", 0.0))
            if facts.status == "crashed":
                facts.failure_kinds.append(f"run:{data.get('error_kind', 'crashed')}")
    facts.llm_cost = round(facts.llm_cost, 8)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def compute(facts: Iterable[RunFacts], since: datetime | None = None, workflow: str | None = None) -> Stats:
    runs = [f for f in facts if workflow is None or f.workflow == workflow]
    by_workflow: dict[str, list[RunFacts]] = defaultdict(list)
    for run in runs:
        by_workflow[run.workflow].append(run)
    modes: Counter[tuple[str, str]] = Counter((r.workflow, kind) for r in runs for kind in r.failure_kinds)
    return Stats(
        since=since,
        workflows=[_workflow_stats(name, items) for name, items in sorted(by_workflow.items())],
        steps=[s for name, items in sorted(by_workflow.items()) for s in _step_stats(name, items)],
        failure_modes=[{"workflow": w, "error_kind": k, "count": n} for (w, k), n in modes.most_common()],
        runs=runs,
    )


FINISHED = ("completed", "failed", "stopped", "crashed", "cancelled")


def _workflow_stats(name: str, runs: list[RunFacts]) -> WorkflowStats:
    finished = [r for r in runs if r.status in FINISHED]
    succeeded = [r for r in finished if r.status == "completed"]
    audited = [r for r in finished if r.audited]
    return WorkflowStats(
        workflow=name, runs=len(runs), finished=len(finished), succeeded=len(succeeded),
        success_rate=_ratio(len(succeeded), len(finished)),
        completion_s=timing([r.duration_s for r in succeeded if r.duration_s is not None]),
        approval_wait_s=round(sum(r.approval_wait_s for r in runs), 3),
        cpu_seconds_per_run=round(sum(r.cpu_seconds for r in audited) / len(audited), 3) if audited else None,
        llm_tokens=sum(r.llm_tokens for r in runs), llm_cost=round(sum(r.llm_cost for r in runs), 8),
    )


def _step_stats(workflow: str, runs: list[RunFacts]) -> list[StepStats]:
    by_step: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        for step in run.steps:
            if step.get("status") != "not_run":
                by_step[step["step"]].append(step)
    result = []
    for step_id, ends in sorted(by_step.items()):
        ok = [e for e in ends if e.get("status") in ("completed", "cached")]
        ran = [e for e in ends if not e.get("cached")]
        retries = sum(max(0, int(e.get("attempts") or 0) - 1) for e in ran)
        result.append(StepStats(
            workflow=workflow, step=step_id, runs=len(ends), succeeded=len(ok),
            success_rate=_ratio(len(ok), len(ends)), cached=len(ends) - len(ran), retries=retries,
            retries_per_run=_ratio(retries, len(ran)),
            duration_s=timing([e["duration_s"] for e in ran if e.get("duration_s") is not None])))
    return result


def timing(values: Sequence[float]) -> Timing:
    """Mean and nearest-rank p50/p95 of ``values`` (all None when there are none)."""
    if not values:
        return Timing()
    ordered = sorted(values)
    return Timing(mean=round(statistics.fmean(ordered), 3), p50=percentile(ordered, 50),
                  p95=percentile(ordered, 95))


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of sorted ``ordered``."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _ratio(part: int | float, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def workflow_table(stats: Stats) -> list[dict[str, Any]]:
    """One row per workflow, for a Prefect table artifact."""
    return [{"workflow": w.workflow, "runs": w.runs, "success_rate": w.success_rate,
             "mean_s": w.completion_s.mean, "p50_s": w.completion_s.p50, "p95_s": w.completion_s.p95,
             "approval_wait_s": w.approval_wait_s, "cpu_s_per_run": w.cpu_seconds_per_run,
             "llm_tokens": w.llm_tokens, "llm_cost": w.llm_cost} for w in stats.workflows]


@flow(name="agentic-stats", description="Publish prefect-agentic workflow metrics as a table artifact.")
def publish_stats(rows: list[dict[str, Any]], description: str) -> None:
    """The metrics as the ``agentic-stats`` table artifact (artifacts belong to a flow run)."""
    create_table_artifact(rows, key="agentic-stats", description=description)
