"""Terminal rendering of run progress and run reports (rich)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from prefect_agentic.flows.run_plan import RunReport
from prefect_agentic.plan.models import Plan
from prefect_agentic.record.progress import StepEvent, StepStatus
from prefect_agentic.report import outcome_line

_STYLE = {
    StepStatus.PENDING: ("·", "dim"),
    StepStatus.RUNNING: ("▶", "cyan"),
    StepStatus.COMPLETED: ("✔", "green"),
    StepStatus.CACHED: ("✔", "blue"),
    StepStatus.FAILED: ("✘", "red"),
    StepStatus.NOT_RUN: ("–", "yellow"),
}


class ProgressDisplay:
    """A live line per step on a terminal; one printed line per event elsewhere (CI logs)."""

    def __init__(self, plan: Plan, console: Console, *, enabled: bool = True) -> None:
        self.plan = plan
        self.console = console
        self.enabled = enabled
        self.live = enabled and console.is_terminal
        self._status = {s.id: StepStatus.PENDING for s in plan.steps}
        self._attempt = {s.id: 0 for s in plan.steps}
        self._since = {s.id: 0.0 for s in plan.steps}
        self._lock = threading.Lock()
        self._live = Live(console=console, refresh_per_second=8, transient=False,
                          get_renderable=self._render)

    def on_event(self, event: StepEvent) -> None:
        with self._lock:
            if event.step_id in self._status:
                self._status[event.step_id] = event.status
                self._attempt[event.step_id] = event.attempt
                if event.status is StepStatus.RUNNING:
                    self._since[event.step_id] = time.monotonic()
        if self.enabled and not self.live:
            mark, style = _STYLE[event.status]
            attempt = f" (attempt {event.attempt})" if event.status is StepStatus.RUNNING else ""
            self.console.print(Text(f"{mark} {event.step_id} {event.status.value}{attempt}", style=style))

    def _render(self) -> Group:
        lines = [Text(f"{self.plan.id} v{self.plan.version}: {self.plan.goal}", style="bold")]
        with self._lock:
            for step in self.plan.steps:
                status = self._status[step.id]
                mark, style = _STYLE[status]
                line = Text(f" {mark} {step.id:<20} {step.tool:<8} {status.value}", style=style)
                if status is StepStatus.RUNNING:
                    elapsed = time.monotonic() - self._since[step.id]
                    line.append(f"  attempt {self._attempt[step.id]}  {elapsed:4.1f}s")
                lines.append(line)
        return Group(*lines)

    def __enter__(self) -> ProgressDisplay:
        if self.live:
            self._live.start()
        elif self.enabled:
            self.console.print(Text(f"{self.plan.id} v{self.plan.version}: {self.plan.goal}", style="bold"))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.live:
            self._live.stop()

    @contextmanager
    def quiet(self) -> Iterator[None]:
        """Stop redrawing while something else talks to the terminal (an approval question)."""
        if self.live:
            self._live.stop()
        try:
            yield
        finally:
            if self.live:
                self._live.start()


def report_table(report: RunReport, wall: str | None = None) -> Group:
    """The end-of-run summary: one row per step, then failure reasons.

    ``wall``: what the user waited, with its parts (``cli.startup.RunClock``);
    without it, the flow run's own duration.
    """
    table = Table(title=f"{report.plan_id} v{report.plan_version} — {report.goal}", title_justify="left")
    columns = ("step", "tool", "status", "attempts", "cached", "duration", "snapshot", "changes", "outcome")
    for column in columns:
        table.add_column(column, justify="right" if column in ("attempts", "duration") else "left")
    for s in report.steps:
        mark, style = _STYLE[s.status]
        table.add_row(
            s.step_id, s.tool, Text(f"{mark} {s.status.value}", style=style),
            str(s.attempts) if s.attempts else "-", "yes" if s.cached else "no",
            f"{s.duration_s:.2f}s" if s.duration_s is not None else "-",
            (s.snapshot or "")[:12] or "-", s.diff_stat or "-", outcome_line(s.output),
        )
    parts: list[Table | Text] = [table]
    for revision in report.revisions:
        by = f" by {revision.planner.name}" if revision.planner else ""
        parts.append(Text(f"plan v{revision.version}{by} after {revision.reason}: "
                          f"{', '.join(revision.steps) or 'nothing left to run'}", style="magenta"))
    for s in report.steps:
        if s.status is StepStatus.FAILED and s.reason:
            parts.append(Text(f"{s.step_id}: {s.reason}", style="red"))
    if report.stopped:
        parts.append(Text(f"stopped: {report.stopped}", style="yellow"))
    verdict = "succeeded" if report.ok else "STOPPED" if report.stopped else "FAILED"
    parts.append(Text(
        f"Run {verdict} in {wall or f'{report.duration_s:.1f}s'}; final snapshot {report.final_snapshot[:12]} "
        f"(workspace {report.workspace})",
        style="bold green" if report.ok else "bold red",
    ))
    if report.exported:
        pushed = f", pushed to {report.exported.pushed_to}" if report.exported.pushed_to else ""
        parts.append(Text(f"exported to branch {report.exported.branch} of {report.exported.repo}{pushed}"))
    if report.flow_run_id:
        parts.append(Text(f"flow run {report.flow_run_id} (agentic audit verify / agentic replay it)",
                          style="dim"))
    return Group(*parts)
