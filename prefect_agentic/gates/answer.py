"""What an approver answers at a gate, and who else (besides the Prefect UI) may answer.

Open-source Prefect does not say who resumed a flow run, so the approver
names themselves in the form (``approver``, required); the CLI fills in the
user name of its process. The name is recorded as given: it is a statement,
not an authenticated identity.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import PrefectHTTPStatusError
from prefect.input import RunInput
from pydantic import BaseModel, Field, create_model

Decision = Literal["approve", "reject", "request_changes"]


DECISION_HELP = ("approve: run the step; reject: stop the run before it (work is kept); "
                 "request_changes: re-plan with your reason (or stop when the run has no planner).")


class ApprovalAnswer(RunInput):
    """An approver's decision on one step, as the resume form in the Prefect UI asks for it."""

    decision: Decision = Field(description=DECISION_HELP)
    approver: str = Field(min_length=1, max_length=200, description="Your name (recorded with the decision).")
    reason: str = Field(default="", max_length=4000, description="Why (needed to reject or request changes).")
    instructions: str = Field(
        default="", max_length=8000,
        description="Optional edited instructions for the step; with request_changes they go to the planner.",
    )

    def problem(self) -> str | None:
        """Why the run cannot act on this answer (checked after resume, so asked again), or None."""
        if self.decision == "reject" and not self.reason.strip():
            return "a rejection needs a reason"
        if self.decision == "request_changes" and not (self.reason.strip() or self.instructions.strip()):
            return "requested changes need a reason or instructions"
        return None


def answer_form(review_html: str) -> type[ApprovalAnswer]:
    """The form of one gate: the review (``GateReview.form_html``) is the help text of its
    decision field, so it is laid out above the decision instead of in the form's small
    scrolling description box."""
    return create_model(  # type: ignore[call-overload,no-any-return]
        "ApprovalAnswer", __base__=ApprovalAnswer,
        decision=(Decision, Field(description=f'{review_html}<p class="mt-2">{DECISION_HELP}</p>')),
    )


class GateSummary(BaseModel):
    """A paused gate in one line, stored with the flow run (key ``gate-<pause key>``) for listings."""

    plan: str
    goal: str
    step: str
    tool: str
    command: str
    risk: str
    asked_at: datetime
    timeout_seconds: int
    review: str = ""
    """The review as Markdown, for terminals (``agentic approvals show``)."""
    why: str = ""

    @staticmethod
    def input_key(pause_key: str) -> str:
        return f"gate-{pause_key}"


def read_review(flow_run: FlowRun, within: float = 5) -> str:
    """The review of a paused flow run's gate, as Markdown. Prefect saves it just after the
    run paused, so a reader that came at once waits a moment (``within`` seconds) for it."""
    key = GateSummary.input_key(flow_run.state.state_details.pause_key or "")  # type: ignore[union-attr]
    deadline = time.monotonic() + within
    with get_client(sync_client=True) as client:
        while True:
            try:
                return GateSummary.model_validate_json(client.read_flow_run_input(flow_run.id, key)).review
            except PrefectHTTPStatusError as exc:
                if exc.response.status_code != 404 or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


@dataclass(frozen=True)
class GateQuestion:
    """What a gate asks, handed to in-process answerers (e.g. the terminal of `agentic run`)."""

    flow_run_id: str
    step_id: str
    key: str
    review: str
    timeout_seconds: int


Answerer = Callable[[GateQuestion], "ApprovalAnswer | None"]
_answerers: list[Answerer] = []
_lock = threading.Lock()


def use_answerer(answerer: Answerer) -> Callable[[], None]:
    """Let ``answerer`` answer this process's gates too; returns the function that stops it.

    The answer still goes through the Prefect API (``resume_flow_run``), so
    the run sees it exactly as it sees one given in the UI, and whichever
    comes first wins. An answerer returning None leaves the gate to others.
    """
    with _lock:
        _answerers.append(answerer)

    def stop() -> None:
        with _lock:
            if answerer in _answerers:
                _answerers.remove(answerer)

    return stop


def answerers() -> list[Answerer]:
    with _lock:
        return list(_answerers)
