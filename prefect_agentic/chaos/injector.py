"""Injects a ``ChaosSpec``'s faults around a step's tool call and records each one.

Every injected fault is a ``chaos_fault`` audit record before it acts, so a
chaos run explains itself (the audit log turns the record into a Prefect
event ``prefect-agentic.chaos.<kind>``). Without a spec nothing here runs:
the executor checks ``run.chaos is None`` once per attempt.

Two families: faults that *stand in* for a failure (``tool_exit``,
``tool_timeout``: the call fails with an ``InjectedFault`` instead of
running), and faults that *cause* one and let the pack's own code meet it
(``container_kill`` kills the real container, ``docker_unavailable`` makes
the engine's socket refuse the step's calls, ``garbled_output`` spoils the
real reports): there the attempt fails, or not, the way it would in
production, and the audit log shows the pack's own error.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from docker.models.containers import Container

from prefect_agentic.boundary import WorkspaceFiles
from prefect_agentic.chaos import engine
from prefect_agentic.chaos.garble import SpoiledReports
from prefect_agentic.chaos.spec import ChaosSpec, Fault, FaultKind
from prefect_agentic.environments.analysis import Counters
from prefect_agentic.errors import ToolError
from prefect_agentic.record.recorder import Recorder
from prefect_agentic.sandbox.runner import Sandbox, command_started

BEFORE = (FaultKind.latency_before, FaultKind.tool_exit, FaultKind.tool_timeout)
AFTER = (FaultKind.latency_after,)
LATENCY = (FaultKind.latency_before, FaultKind.latency_after)


class InjectedFault(ToolError):
    """A tool failure injected by a chaos run (retryable, as its real counterpart is)."""

    retryable = True

    def __init__(self, kind: FaultKind, message: str) -> None:
        self.kind = kind
        self.chaos_kind = kind.value  # error_kind() groups failures by it: chaos:<kind>
        super().__init__(message)


class ChaosInjector:
    """The faults of ``spec`` for one step attempt."""

    def __init__(self, spec: ChaosSpec, recorder: Recorder, tool: str, step_id: str, attempt: int) -> None:
        self.spec, self.recorder = spec, recorder
        self.tool, self.step_id, self.attempt = tool, step_id, attempt

    def before_tool(self) -> None:
        """Latency first, then at most one failure (the first selected fault that hits)."""
        self._inject(BEFORE)

    def after_tool(self) -> None:
        self._inject(AFTER)

    def start_attempt(self) -> None:
        """``process_kill``: arm the process's SIGKILL, ``seconds`` from now (wherever the run is then)."""
        hit = self._hit(FaultKind.process_kill)
        if hit is not None:
            from prefect_agentic.chaos import process  # loaded by process kills only

            process.arm(hit[1].seconds, lambda: self._record(hit[0], hit[1], seconds=hit[1].seconds))

    @contextmanager
    def around_tool(self, sandbox: Sandbox) -> Iterator[None]:
        """While the tool runs: the engine refusing its calls, its container killed, its model's
        answers spoiled, as the spec says."""
        outage = self._hit(FaultKind.docker_unavailable)
        kill = self._hit(FaultKind.container_kill)
        outage_token = kill_token = None
        if outage is not None:
            index, fault = outage
            engine.install(sandbox.client)  # type: ignore[attr-defined]
            self._record(index, fault, seconds=fault.seconds)
            outage_token = engine.engine_outage.set(time.monotonic() + fault.seconds)
        if kill is not None:
            kill_token = command_started.set(self._killer(*kill))
        regression = self._hit(FaultKind.canary_regression)
        regression_token = None
        if regression is not None:
            from prefect_agentic.environments import rollout  # canary chaos only

            regression_token = rollout.metrics_filter.set(self._regression(*regression))
        from prefect_agentic.chaos import llm as chaos_llm  # pydantic-ai: loaded by chaos runs only

        try:
            with chaos_llm.spoiled_answers(self.spec, self.recorder):
                yield
        finally:
            if regression_token is not None:
                rollout.metrics_filter.reset(regression_token)
            if kill_token is not None:
                command_started.reset(kill_token)
            if outage_token is not None:
                engine.engine_outage.reset(outage_token)

    def reports_filter(self) -> Any:
        """A ``ToolContext.reports_filter`` spoiling the reports, or None when no fault hits."""
        hit = self._hit(FaultKind.garbled_output)
        if hit is None:
            return None
        index, fault = hit
        mode = fault.pick_mode(self.spec, index, self.step_id, self.attempt)

        def spoiled(view: WorkspaceFiles) -> WorkspaceFiles:
            return SpoiledReports(view.root, view.prefix, view.read_limit, mode=mode,
                                  spoiling=lambda name: self._record(index, fault, mode=mode, report=name))

        return spoiled

    def _regression(self, index: int, fault: Fault) -> Any:
        """The canary's scrapes as a regression would make them: half of its requests errors (``errors``),
        or every request slower than the histogram's last bound (``latency``). Recorded at the first scrape."""
        mode = fault.pick_mode(self.spec, index, self.step_id, self.attempt)
        recorded = False

        def spoil(counters: Counters) -> Counters:
            nonlocal recorded
            if not recorded:
                recorded = True
                self._record(index, fault, mode=mode)
            if mode == "errors":
                return Counters(counters.requests, max(counters.errors, counters.requests / 2), counters.buckets)
            return Counters(counters.requests, counters.errors,
                            tuple((le, n if math.isinf(le) else 0.0) for le, n in counters.buckets))

        return spoil

    def _killer(self, index: int, fault: Fault) -> Any:
        """The ``command_started`` hook: kill the first command's container, ``seconds`` after it started."""
        fired = False

        def kill(sandbox: Any, container: Container) -> None:
            nonlocal fired
            if fired:
                return
            fired = True
            time.sleep(fault.seconds)
            self._record(index, fault, seconds=fault.seconds, container=container.name)
            # False when the command had ended already: the attempt goes on as if nothing happened
            sandbox.kill(container, f"its container {container.name} was killed (chaos fault container_kill)")

        return kill

    def _hit(self, kind: FaultKind) -> tuple[int, Fault] | None:
        """The first fault of ``kind`` that selects and hits this attempt."""
        for index, fault in enumerate(self.spec.faults):
            if (fault.kind is kind and fault.selects(self.tool, self.step_id, self.attempt)
                    and self.spec.hits(index, self.step_id, self.attempt)):
                return index, fault
        return None

    def _record(self, index: int, fault: Fault, **extra: Any) -> None:
        self.recorder.record("chaos_fault", {
            "fault": index, "kind": fault.kind.value, "tool": self.tool, "attempt": self.attempt,
            "seed": self.spec.seed, **extra}, step_id=self.step_id)

    def _inject(self, kinds: tuple[FaultKind, ...]) -> None:
        for index, fault in enumerate(self.spec.faults):
            if fault.kind not in kinds or not fault.selects(self.tool, self.step_id, self.attempt):
                continue
            if not self.spec.hits(index, self.step_id, self.attempt):
                continue
            self._record(index, fault, **({"seconds": fault.seconds} if fault.kind in LATENCY else {}))
            if fault.kind in LATENCY:
                time.sleep(fault.seconds)
            elif fault.kind is FaultKind.tool_exit:
                raise InjectedFault(fault.kind, f"chaos: tool '{self.tool}' exited with code 1 (injected)")
            elif fault.kind is FaultKind.tool_timeout:
                raise InjectedFault(fault.kind, f"chaos: tool '{self.tool}' timed out (injected)")
