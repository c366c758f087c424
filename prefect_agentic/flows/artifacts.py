"""Prefect artifacts of a plan run: progress while it runs, a summary and a step table at the end.

They are views for the Prefect UI, made from the run report and the audit
records; the audit log stays the source of truth (the summary names its head
hash). One is not a view: the audit anchor, the log's head kept apart from the
log, which ``agentic audit verify`` reads. Artifact keys are per plan, so the Artifacts page shows each plan's
latest run and keeps the earlier ones as versions.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any
from uuid import UUID

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from pydantic import TypeAdapter, ValidationError

from prefect_agentic.errors import AuditError
from prefect_agentic.record.audit import AuditAnchor, AuditRecord
from prefect_agentic.report import RunReport, StepReport, outcome_line

logger = logging.getLogger("prefect_agentic.artifacts")


def artifact_key(kind: str, plan_id: str) -> str:
    """``agentic-<kind>-<plan id>`` in the alphabet Prefect allows (lower case, digits, dashes)."""
    return re.sub(r"[^a-z0-9-]+", "-", f"agentic-{kind}-{plan_id}".lower()).strip("-")


PROGRESS_INTERVAL_SECONDS = 1.0
"""The progress artifact is updated at most this often (and always when the last step ends)."""


class ProgressArtifact:
    """Audit observer: the share of the current plan's steps that have finished, in percent.

    The artifact is made when a step finishes with steps still to go once the
    run has lasted ``PROGRESS_INTERVAL_SECONDS``, with the share done by then,
    and updated at most that often. A run over sooner (a one-step plan, a
    resume from the cache) gets no bar: it would say nothing the run's state
    does not.

    The writes are made in order by a thread of their own: each is an API
    request, and made here they sat on the steps' critical path, since
    the scheduler records a step's end before it starts the steps after it
    (``bench/step_overhead.py``, docs/benchmarks.md). The run's end calls ``flush``.
    """

    def __init__(self, plan_id: str, steps: Sequence[str], clock: Callable[[], float] = time.monotonic) -> None:
        self.plan_id = plan_id
        self.steps = list(steps)
        self.finished: set[str] = set()
        self._clock = clock
        self._updated = clock()  # no bar before the run has lasted an interval
        self._wanted = False
        self.artifact_id: UUID | None = None
        self._writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"agentic-progress-{plan_id}")
        self._last: Future[None] | None = None

    def __call__(self, record: AuditRecord) -> None:
        if record.kind == "plan" and isinstance(record.data.get("plan"), dict):
            self.steps = [s["id"] for s in record.data["plan"].get("steps", [])]
            self.finished -= set(record.data.get("steps", []))
        elif record.kind == "step_finished" and record.step:
            self.finished.add(record.step)
        else:
            return
        done = len(self.finished & set(self.steps))
        now = self._clock()
        if done < len(self.steps) and now - self._updated < PROGRESS_INTERVAL_SECONDS:
            return
        if done == len(self.steps) and not self._wanted:
            return
        self._updated, self._wanted = now, True
        self._hand_over((round(100.0 * done / max(1, len(self.steps)), 1), f"{done} of {len(self.steps)} steps finished"))

    def flush(self) -> None:
        """Wait until every share handed over is written (or its write failed)."""
        if self._last is not None:
            wait([self._last])

    def _hand_over(self, share: tuple[float, str]) -> None:
        """Queue the write of ``share`` in the caller's context (the flow run's, which the artifact joins)."""
        self._last = self._writes.submit(contextvars.copy_context().run, self._write_logged, *share)

    def _write_logged(self, share: float, description: str) -> None:
        try:
            self._write(share, description)
        except Exception:  # the UI's view of a run must never fail the run
            logger.exception("could not write the progress artifact of plan %s", self.plan_id)

    def _write(self, share: float, description: str) -> None:
        if self.artifact_id is None:  # a creation the API refused is tried again at the next write
            self.artifact_id = create_progress_artifact(share, key=artifact_key("progress", self.plan_id),
                                                        description=description)
        else:
            update_progress_artifact(self.artifact_id, share, description=description)


def step_rows(report: RunReport, records: Sequence[AuditRecord]) -> list[dict[str, Any]]:
    """One row per step: status, attempts, cache hit, timings (from the audit records)."""
    started: dict[str, str] = {}
    finished: dict[str, str] = {}
    for record in records:
        if record.step and record.kind == "attempt_started":
            started.setdefault(record.step, record.at.isoformat(timespec="seconds"))
        if record.step and record.kind == "step_finished":
            finished[record.step] = record.at.isoformat(timespec="seconds")
    return [{"step": s.step_id, "tool": s.tool, "status": s.status.value, "attempts": s.attempts,
             "cached": s.cached, "duration_s": s.duration_s, "started": started.get(s.step_id, ""),
             "finished": finished.get(s.step_id, ""), "snapshot": (s.snapshot or "")[:12],
             "changes": s.diff_stat or "", "outcome": outcome_line(s.output)} for s in report.steps]


def summary_markdown(report: RunReport, status: str, diff_stat: str, audit_head: str,
                     audit_location: str) -> str:
    """Goal, steps and statuses, the run's diff stat, test results, failures, where the audit log is."""
    lines = [f"# {report.plan_id} v{report.plan_version}: {report.goal}", "",
             (f"**Status:** {status} in {report.duration_s:.1f}s · **changes:** {diff_stat} · "
              f"**final snapshot:** `{report.final_snapshot[:12]}`"), "",
             "| step | tool | status | attempts | cached | duration | changes | outcome |",
             "|---|---|---|---|---|---|---|---|"]
    for s in report.steps:
        duration = f"{s.duration_s:.2f}s" if s.duration_s is not None else "-"
        lines.append(f"| {s.step_id} | {s.tool} | {s.status.value} | {s.attempts} | "
                     f"{'yes' if s.cached else 'no'} | {duration} | {s.diff_stat or '-'} | "
                     f"{_cell(outcome_line(s.output))} |")
    lines += _test_results(report.steps)
    failures = [s for s in report.steps if s.status.value == "failed" and s.reason]
    if failures or report.stopped:
        lines += ["", "## Failures"]
        lines += [f"- **{s.step_id}**: {_cell(s.reason or '')[:500]}" for s in failures]
        if report.stopped:
            lines.append(f"- stopped: {_cell(report.stopped)}")
    for revision in report.revisions:
        by = f" by {revision.planner.name}" if revision.planner else ""
        lines.append(f"- plan v{revision.version}{by} after {revision.reason}: {', '.join(revision.steps)}")
    lines += ["", "## Audit", f"- run key `{report.run_key}`, flow run `{report.flow_run_id}`",
              f"- log: `{audit_location}`, head `{audit_head}`",
              f"- verify: `agentic audit verify {report.flow_run_id}`"]
    return "\n".join(lines)


def _test_results(steps: Sequence[StepReport]) -> list[str]:
    tested = [s for s in steps if s.output and "tests_failed" in s.output]
    if not tested:
        return []
    lines = ["", "## Test results"]
    for s in tested:
        out = s.output or {}
        lines.append(f"- **{s.step_id}**: {out.get('passed', 0)} passed, {out.get('failed', 0)} failed, "
                     f"{out.get('errors', 0)} errors, {out.get('skipped', 0)} skipped")
        lines += [f"  - failing: `{test}`" for test in out.get("failing_tests", [])[:20]]
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def publish_run_artifacts(report: RunReport, records: Sequence[AuditRecord], *, status: str,
                          diff_stat: str, audit_head: str, audit_location: str) -> None:
    """The summary and the step table of a finished run (a failure to publish is only logged)."""
    try:
        create_markdown_artifact(summary_markdown(report, status, diff_stat, audit_head, audit_location),
                                 key=artifact_key("summary", report.plan_id),
                                 description=f"Run of plan {report.plan_id}: {status}")
        create_table_artifact(step_rows(report, records), key=artifact_key("steps", report.plan_id),
                              description=f"Steps of plan {report.plan_id} v{report.plan_version}")
    except Exception:  # the UI's view of a run must never fail the run
        logger.exception("could not publish the run's artifacts")


ANCHOR_KIND = "audit-head"
"""Artifact kind of the audit anchor: its key is ``agentic-audit-head-<plan id>``."""


_ANCHOR_ROWS = TypeAdapter(list[AuditAnchor])


class AnchorArtifactError(AuditError):
    """An audit anchor artifact in Prefect that does not hold an anchor."""


def publish_audit_anchor(plan_id: str, anchor: AuditAnchor | None) -> None:
    """Hand the head of the run's audit log to Prefect, where ``agentic audit verify`` compares it.

    A table artifact of its own, all fields ours: the summary artifact quotes
    what steps printed, and a head read from it could be a step's. Made when a
    process of the run ends, however it ends (a failure to publish is only
    logged: verify then says that the head was not checked).
    """
    if anchor is None:
        return
    try:
        create_table_artifact([anchor.model_dump(mode="json")], key=artifact_key(ANCHOR_KIND, plan_id),
                              description=f"Head of this run's audit log after record seq {anchor.seq} "
                                          f"({anchor.record}): `agentic audit verify` compares the log with it")
    except Exception:  # the run's work is done; verify will say the head was not checked
        logger.exception("could not publish the audit head of plan %s's run: `agentic audit verify` will "
                         "report its head as not checked", plan_id)


async def read_audit_anchor(flow_run_id: str) -> AuditAnchor | None:
    """The latest head the run's processes handed to Prefect (None: they handed over none).

    Raises ``ValueError`` for an id that is not a UUID and ``ObjectNotFound``
    when the API does not know the flow run (another server's run, logs copied
    from elsewhere).
    """
    run_id = UUID(flow_run_id)
    async with get_client() as client:
        await client.read_flow_run(run_id)
        found = await client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(like_=f"agentic-{ANCHOR_KIND}-%"),
            flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
    anchors = []
    for artifact in found:
        try:
            anchors += _ANCHOR_ROWS.validate_json(str(artifact.data))
        except ValidationError as exc:
            raise AnchorArtifactError(f"artifact {artifact.key} ({artifact.id}) of flow run {flow_run_id} "
                                      f"holds no audit anchor: {exc.errors()[0]['msg']}") from None
    return max(anchors, key=lambda anchor: anchor.seq, default=None)
