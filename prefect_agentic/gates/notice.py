"""The one message that says a run is waiting for a human, wherever the run is watched.

A gate that asks builds a ``WaitingNotice`` once: it goes to the run's log, to
a Prefect markdown artifact, to the audit log (``approval_requested``, hence a
Prefect event), and to in-process watchers (``agentic run`` without a
terminal). A watcher in another process (``agentic submit --wait``) rebuilds
the same notice from the paused flow run and the gate's stored summary
(``notice_for``). Every copy names the step, why it is gated, the run's page in
the UI and the exact ``agentic approve`` command.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.settings import PREFECT_UI_URL
from pydantic import BaseModel

from prefect_agentic.gates.answer import GateSummary


class WaitingNotice(BaseModel):
    """A flow run waiting at an approval gate: what, why, where to answer, how."""

    flow_run_id: str
    plan: str
    step: str
    why: str
    gate: str
    timeout_seconds: int

    @property
    def ui_url(self) -> str | None:
        ui = PREFECT_UI_URL.value()
        return f"{ui.rstrip('/')}/runs/flow-run/{self.flow_run_id}" if ui else None

    @property
    def approve_command(self) -> str:
        return f"agentic approve {self.flow_run_id}"

    def text(self) -> str:
        """The notice as lines of plain text (terminal, log)."""
        where = self.ui_url or "the Prefect UI (no PREFECT_UI_URL set)"
        return (f"Waiting for approval: step '{self.step}' of plan {self.plan} ({self.why}).\n"
                f"  Answer in the UI: {where}\n"
                f"  or run: {self.approve_command}   "
                f"(or: agentic reject {self.flow_run_id} --reason ...)\n"
                f"  The run waits up to {self.timeout_seconds}s (gate {self.gate}).")

    def markdown(self) -> str:
        """The notice as the body of a Prefect artifact."""
        link = f"[{self.ui_url}]({self.ui_url})" if self.ui_url else "the flow run's page"
        return (f"# Waiting for approval: step `{self.step}`\n\n"
                f"Plan **{self.plan}** waits at step `{self.step}`: {self.why}.\n\n"
                f"- Answer in the Prefect UI: {link} (Resume)\n"
                f"- or from a shell: `{self.approve_command}` "
                f"(`agentic reject {self.flow_run_id} --reason ...`)\n"
                f"- the run waits up to {self.timeout_seconds} s (gate `{self.gate}`)\n")


def why_gated(requires_approval: bool, rules: list[str]) -> str:
    """Why a step needs a human, in words."""
    reasons = (["the plan marks it requires_approval"] if requires_approval else []) + [
        f"the tool policy gates {rule}" for rule in rules]
    return "; ".join(reasons) or "it needs approval"


def notice_for(flow_run: FlowRun) -> WaitingNotice | None:
    """The notice of a flow run paused or suspended at an approval gate (None otherwise)."""
    state = flow_run.state
    key = state.state_details.pause_key if state is not None and state.is_paused() else None
    if not key or not key.startswith("approve-"):
        return None
    with get_client(sync_client=True) as client:
        raw = client.read_flow_run_input(flow_run.id, GateSummary.input_key(key))
    if not raw:
        return None
    summary = GateSummary.model_validate_json(raw)
    return WaitingNotice(flow_run_id=str(flow_run.id), plan=summary.plan, step=summary.step,
                         why=summary.why or summary.risk, gate=key, timeout_seconds=summary.timeout_seconds)


Watcher = Callable[[WaitingNotice], None]
_watchers: list[Watcher] = []
_lock = threading.Lock()


def watch_gates(watcher: Watcher) -> Callable[[], None]:
    """Tell ``watcher`` about every gate of this process that starts waiting; returns the undo.

    Unlike an answerer, a watcher only shows the notice (``agentic run``
    without a terminal): the answer comes from the UI or ``agentic approve``.
    """
    with _lock:
        _watchers.append(watcher)

    def stop() -> None:
        with _lock:
            if watcher in _watchers:
                _watchers.remove(watcher)

    return stop


def tell_watchers(notice: WaitingNotice) -> None:
    with _lock:
        watchers = list(_watchers)
    for watcher in watchers:
        watcher(notice)
