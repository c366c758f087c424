"""Drives a compiled plan through Prefect's task runner, one ready step at a time.

Steps are submitted as soon as the steps they depend on completed, so
independent steps run in parallel. Between steps the run's hooks decide
whether the next step may start (approval gates, budgets) and may stop the
run cleanly: every step not started then ends ``not_run`` with the reason,
and whatever completed keeps its snapshot, so the run can be resumed.

After a step, a hook may also ask for a revised plan (``Replan``): the
scheduler starts nothing more, waits until no step runs, and asks the hook
for the next plan version. That version keeps every completed step exactly as
it ran (never executed again, snapshots still valid) and replaces the rest,
which then runs in the same flow run.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect.futures import PrefectFuture

from prefect_agentic.compiler import CompiledPlan, compile_plan
from prefect_agentic.errors import PlanError
from prefect_agentic.executor import RunContext, StepResult, run_resources, run_tool
from prefect_agentic.pins import pin_new_tools
from prefect_agentic.plan.models import Plan, Step
from prefect_agentic.plan.revision import changed_completed_steps
from prefect_agentic.record.progress import StepEvent, StepStatus, publish
from prefect_agentic.report import PlanRevision, StepReport
from prefect_agentic.secrets import named_secrets
from prefect_agentic.tasks.remote_step import TaskWorkerStep
from prefect_agentic.tasks.step import step_task
from prefect_agentic.tools.registry import default_registry


@dataclass(frozen=True)
class Go:
    """The step may start."""


@dataclass(frozen=True)
class Stop:
    """The run stops before this step; ``reason`` says why (shown and recorded)."""

    reason: str


@dataclass(frozen=True)
class Replan:
    """Start no further step; once none runs, call ``revise(plan, reports)`` for the next version.

    ``revise`` is called only when the run is quiet, because the revision
    must see how every running step ended, and because asking a human pauses
    the flow run, which must not happen under running tasks. It returns the
    next plan version, ``Stop`` to end the run, or None to carry on without a
    revision (the failure stands).
    """

    reason: str
    revise: Callable[[Plan, dict[str, StepReport]], Plan | Stop | None]


Decision = Go | Stop


class RunHook:
    """Extension point of a run. The default hook lets every step run.

    ``exclusive(step)`` asks the scheduler to wait until no other step is
    running before calling ``before_step`` (an approval gate pauses the whole
    flow run, which must not happen under running tasks). ``before_step`` may
    answer ``Replan`` too (a human asked for changes): the step does not start,
    and nothing else does until the revision.
    """

    def exclusive(self, step: Step) -> bool:
        return False

    def before_step(self, step: Step, done: dict[str, StepReport]) -> Decision | Replan:
        return Go()

    def after_step(self, step: Step, report: StepReport) -> Decision | Replan:
        return Go()

    def after_stop(self, reason: str, reports: dict[str, StepReport]) -> str | None:
        """The run stopped (a hook said ``Stop``) and nothing more will start: undo what must not stay.

        Returns what was undone, in a few words, for the run's ``stopped`` reason (None: nothing).
        """
        return None


@dataclass
class StepScheduler:
    """Runs ``compiled`` for ``run``; ``attempts`` is filled by the caller's progress listener."""

    compiled: CompiledPlan
    run: RunContext
    hooks: Sequence[RunHook] = ()
    refresh_cache: bool = False
    attempts: dict[str, int] = field(default_factory=dict)
    stopped: str | None = None
    revisions: list[PlanRevision] = field(default_factory=list)
    superseded: list[StepReport] = field(default_factory=list)
    _replan: Replan | None = None
    _futures: dict[str, Any] = field(default_factory=dict)  # PrefectFuture or TaskWorkerStep
    _reports: dict[str, StepReport] = field(default_factory=dict)
    _finished: queue.Queue[str] = field(default_factory=queue.Queue)

    @property
    def plan(self) -> Plan:
        return self.compiled.plan

    def run_all(self) -> dict[str, StepReport]:
        """Run every step that can run; returns a report for every step of the plan."""
        waiting = list(self.compiled.order)
        while waiting or self._running() or self._replan:
            if self._replan is None:
                waiting = self._start_ready(waiting)
            if self._running():
                self._finish(self._finished.get())
            elif self._replan is not None:  # quiet now: time to revise
                waiting = self._revise(self._replan, waiting)
            elif waiting:  # nothing runs and nothing could start: only blocked steps remain
                for step_id in waiting:
                    self._not_run(step_id, "not run: a step it depends on did not complete")
                waiting = []
        if self.stopped is not None:
            undone = [note for hook in self.hooks if (note := hook.after_stop(self.stopped, dict(self._reports)))]
            if undone:  # the summary says what the stop undid, not only why it stopped
                self.stopped = "; then ".join([self.stopped, *undone])
        return self._reports

    def settle(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the steps still running to end.

        A run that crashes records so only once its running steps have recorded how
        they ended: its ``run_finished`` is then its log's last record.
        """
        deadline = time.monotonic() + timeout
        for step_id in self._running():
            self._futures[step_id].wait(max(0.0, deadline - time.monotonic()))

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
            elif (any(r is None for r in deps) or self._replan is not None
                  or (self._running() and self._wants_exclusive(step))):
                still_waiting.append(step_id)
            else:
                decision = self._before(step)
                if isinstance(decision, Stop):
                    self.stopped = decision.reason
                    self._not_run(step_id, f"not run: {decision.reason}")
                elif isinstance(decision, Replan):
                    self._replan = decision
                    still_waiting.append(step_id)
                else:
                    self._submit(step)
        return still_waiting

    def _wants_exclusive(self, step: Step) -> bool:
        return any(hook.exclusive(step) for hook in self.hooks)

    def _before(self, step: Step) -> Decision | Replan:
        for hook in self.hooks:
            decision = hook.before_step(step, dict(self._reports))
            if isinstance(decision, (Stop, Replan)):
                return decision
        return Go()

    def _submit(self, step: Step) -> None:
        source = self.compiled.sources[step.id]
        self._record("step_input", step.id, {
            "tool": step.tool, "tool_version": run_tool(self.run, step.tool).version,
            "args": step.args, "input_from": source, "plan_version": self.plan.version,
            **step.model_dump(mode="json", include={"depends_on", "success", "retries",
                                                    "writes_workspace"})})
        if self.run.steps_on == "task-workers":
            input_result = self._futures[source].state.result() if source else None
            future: PrefectFuture[StepResult] | TaskWorkerStep = TaskWorkerStep(step, self.run, input_result)
        else:
            task = step_task(step, self.plan.id, refresh_cache=self.refresh_cache)
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
                self._replan = None
            elif isinstance(decision, Replan) and self.stopped is None and self._replan is None:
                self._replan = decision

    def _revise(self, replan: Replan, waiting: list[str]) -> list[str]:
        """Ask for the next plan version and continue with it; returns the steps now waiting."""
        self._replan = None
        outcome = replan.revise(self.plan, dict(self._reports))
        if isinstance(outcome, Stop):
            self.stopped = outcome.reason
            return waiting
        if outcome is None:
            return waiting
        completed = [s for s, r in self._reports.items() if r.ok]
        problems = changed_completed_steps(self.plan, outcome, completed)
        if problems:
            raise PlanError(f"plan '{outcome.id}' v{outcome.version}", problems)
        self.compiled = compile_plan(outcome, self.run.policy)
        replaced = [s.id for s in self.compiled.plan.steps if s.id not in completed]
        for step_id in [s for s, r in self._reports.items() if not r.ok]:
            self.superseded.append(self._reports.pop(step_id))
            self._futures.pop(step_id, None)
        revision = PlanRevision(version=outcome.version, reason=replan.reason,
                                planner=outcome.planner, steps=replaced)
        self.revisions.append(revision)
        pinned = self._pin_new_tools(outcome)
        # steps of the revision may name secrets of their own: task workers load them for redaction
        self.run.secret_names = sorted({*self.run.secret_names, *named_secrets(outcome.steps)})
        run_resources(self.run).recorder.record("plan", {
            **revision.model_dump(mode="json"),
            "plan": outcome.model_dump(mode="json", exclude_defaults=True),
            **({"pins": pinned} if pinned else {}),
        })
        return replaced

    def _pin_new_tools(self, plan: Plan) -> dict[str, str]:
        """Pin the tools a revision brings, as the run's start pinned its own (see ``prefect_agentic.pins``)."""
        if self.run.pins is None:
            return {}
        added = pin_new_tools(self.run.pins, plan, default_registry())
        self.run.tool_versions.update(added)
        return added

    def _not_run(self, step_id: str, reason: str) -> None:
        step = self.plan.step(step_id)
        report = StepReport(step_id=step_id, tool=step.tool, status=StepStatus.NOT_RUN, reason=reason)
        self._reports[step_id] = report
        self._publish(report)

    def _record(self, kind: str, step_id: str, data: dict[str, object]) -> None:
        run_resources(self.run).recorder.record(kind, data, step_id=step_id)

    def _publish(self, report: StepReport) -> None:
        """Record how the step ended (before anything acts on it), then tell the listeners."""
        self._record("step_finished", report.step_id, {
            "plan_version": self.plan.version,
            **report.model_dump(mode="json", exclude={"step_id", "output"})})
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
                      reason=str(exc) if isinstance(exc, BaseException) else state.message,
                      output=getattr(exc, "output", None),
                      attempt_snapshot=getattr(exc, "attempt_snapshot", None))
