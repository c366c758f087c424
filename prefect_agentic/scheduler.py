"""Drives a compiled plan through Prefect's task runner, one ready step at a time.

Steps are submitted as soon as the steps they depend on completed, so
independent steps run in parallel. Between steps the run's hooks decide
whether the next step may start (approval gates, budgets) and may stop the
run cleanly: every step not started then ends ``not_run`` with the reason,
and whatever completed keeps its snapshot, so the run can be resumed.
"""

from __future__ import annotations

import queue
from collections.abc import Sequence
from dataclasses import dataclass, field

from prefect.futures import PrefectFuture

from prefect_agentic.compiler import CompiledPlan
from prefect_agentic.executor import RunContext, StepResult
from prefect_agentic.plan.models import Plan, Step
from prefect_agentic.record.progress import StepEvent, StepStatus, publish
from prefect_agentic.report import StepReport
from prefect_agentic.tasks.step import step_task


@dataclass(frozen=True)
class Go:
    """The step may start."""


@dataclass(frozen=True)
class Stop:
    """The run stops before this step; ``reason`` says why (shown and recorded)."""

    reason: str


Decision = Go | Stop


class RunHook:
    """Extension point of a run. The default hook lets every step run.

    ``exclusive(step)`` asks the scheduler to wait until no other step is
    running before calling ``before_step`` (an approval gate pauses the whole
    flow run, which must not happen under running tasks).
    """

    def exclusive(self, step: Step) -> bool:
        return False

    def before_step(self, step: Step, done: dict[str, StepReport]) -> Decision:
        return Go()

    def after_step(self, step: Step, report: StepReport) -> Decision:
        return Go()


@dataclass
class StepScheduler:
    """Runs ``compiled`` for ``run``; ``attempts`` is filled by the caller's progress listener."""

    compiled: CompiledPlan
    run: RunContext
    hooks: Sequence[RunHook] = ()
    refresh_cache: bool = False
    attempts: dict[str, int] = field(default_factory=dict)
    stopped: str | None = None
    _futures: dict[str, PrefectFuture[StepResult]] = field(default_factory=dict)
    _reports: dict[str, StepReport] = field(default_factory=dict)
    _finished: queue.Queue[str] = field(default_factory=queue.Queue)

    @property
    def plan(self) -> Plan:
        return self.compiled.plan

    def run_all(self) -> dict[str, StepReport]:
        """Run every step that can run; returns a report for every step of the plan."""
        waiting = list(self.compiled.order)
        while waiting or self._running():
            waiting = self._start_ready(waiting)
            if self._running():
                self._finish(self._finished.get())
            elif waiting:  # nothing runs and nothing could start: only blocked steps remain
                for step_id in waiting:
                    self._not_run(step_id, "not run: a step it depends on did not complete")
                waiting = []
        return self._reports

    def _running(self) -> list[str]:
        return [s for s in self._futures if s not in self._reports]

    def _start_ready(self, waiting: list[str]) -> list[str]:
        still_waiting = []
        for step_id in waiting:
            step = self.plan.step(step_id)
            deps = [self._reports.get(d) for d in step.depends_on]
            if any(r is not None and not r.ok for r in deps):
                self._not_run(step_id, "not run: a step it depends on did not complete")
            elif self.stopped is not None:
                self._not_run(step_id, f"not run: {self.stopped}")
            elif any(r is None for r in deps) or (self._running() and self._wants_exclusive(step)):
                still_waiting.append(step_id)
            else:
                decision = self._before(step)
                if isinstance(decision, Stop):
                    self.stopped = decision.reason
                    self._not_run(step_id, f"not run: {decision.reason}")
                else:
                    self._submit(step)
        return still_waiting

    def _wants_exclusive(self, step: Step) -> bool:
        return any(hook.exclusive(step) for hook in self.hooks)

    def _before(self, step: Step) -> Decision:
        for hook in self.hooks:
            decision = hook.before_step(step, dict(self._reports))
            if isinstance(decision, Stop):
                return decision
        return Go()

    def _submit(self, step: Step) -> None:
        source = self.compiled.sources[step.id]
        task = step_task(step, self.plan.id, self.run.sandbox.timeout_seconds)
        if self.refresh_cache:
            task = task.with_options(refresh_cache=True)
        future = task.submit(step, self.run, input_result=self._futures[source] if source else None)
        self._futures[step.id] = future
        future.add_done_callback(lambda _f, step_id=step.id: self._finished.put(step_id))

    def _finish(self, step_id: str) -> None:
        report = step_report(self.plan.step(step_id), self._futures[step_id],
                             self.attempts.get(step_id, 0))
        self._reports[step_id] = report
        self._publish(report)
        for hook in self.hooks:
            decision = hook.after_step(self.plan.step(step_id), report)
            if isinstance(decision, Stop) and self.stopped is None:
                self.stopped = decision.reason

    def _not_run(self, step_id: str, reason: str) -> None:
        step = self.plan.step(step_id)
        report = StepReport(step_id=step_id, tool=step.tool, status=StepStatus.NOT_RUN, reason=reason)
        self._reports[step_id] = report
        self._publish(report)

    def _publish(self, report: StepReport) -> None:
        publish(StepEvent(run_key=self.run.run_key, step_id=report.step_id, status=report.status,
                          attempt=report.attempts, message=report.reason or ""))


def step_report(step: Step, future: PrefectFuture[StepResult], attempts: int) -> StepReport:
    """The report of a finished step task, from its final state."""
    future.wait()  # makes .state the final state instead of a possibly lagging API read
    state = future.state
    if state.is_completed():
        result: StepResult = state.result()
        cached = state.name == "Cached"
        return StepReport(
            step_id=step.id, tool=step.tool, status=StepStatus.CACHED if cached else StepStatus.COMPLETED,
            attempts=0 if cached else result.attempts, cached=cached,
            duration_s=None if cached else result.duration_s, snapshot=result.snapshot,
            diff_stat=result.changes.stat_line(), output=result.output,
        )
    exc = state.result(raise_on_failure=False)
    return StepReport(step_id=step.id, tool=step.tool, status=StepStatus.FAILED, attempts=attempts,
                      reason=str(exc) if isinstance(exc, BaseException) else state.message)
