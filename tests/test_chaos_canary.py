"""``canary_regression``: rollback rehearsal on demand, on the upgrade-service example stack (real Docker).

A good change is canaried; the fault makes the canary's metrics read as a regression, so the
rollout's own analysis breaches its threshold and the real rollback runs: the canary is taken
out, stable keeps serving every request, the run ends rolled back.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_agent_loop import run as run_with_loop
from test_upgrade_service import (  # noqa: F401  (fixtures)
    FAST_GATES,
    GOOD,
    _records,
    canaries,
    plan,
    records,
    sent_since,
    service_repo,
    service_runtime,
    stack,
    traffic,
)

from prefect_agentic.blocks import ToolPolicy
from prefect_agentic.chaos import ChaosSpec, Fault
from prefect_agentic.environments.analysis import Counters
from prefect_agentic.environments.stack import Stack


def test_a_regression_spoils_only_what_the_analysis_reads() -> None:
    from prefect_agentic.chaos.injector import ChaosInjector

    class Keep:
        def __init__(self) -> None:
            self.kept: list[dict] = []  # type: ignore[type-arg]

        def record(self, kind: str, data: dict, *, step_id: str | None = None) -> None:  # type: ignore[type-arg]
            self.kept.append(dict(data))

    real = Counters(100, 1, ((0.05, 90), (0.1, 99), (float("inf"), 100)))
    for mode, check in [("errors", lambda c: c.error_rate == 0.5 and c.buckets == real.buckets),
                        ("latency", lambda c: c.errors == 1 and c.percentile_ms(95) == 100.0)]:
        keep = Keep()
        spec = ChaosSpec(faults=[Fault(kind="canary_regression", tools="service_canary", mode=mode)])
        spoil = ChaosInjector(spec, keep, "service_canary", "canary", 1)._regression(0, spec.faults[0])
        assert check(spoil(real)) and check(spoil(real))
        assert [k["mode"] for k in keep.kept] == [mode]  # recorded once, at the first scrape


@pytest.mark.usefixtures("prefect_api")
def test_a_good_change_with_a_canary_regression_is_rolled_back_and_stable_serves_throughout(  # type: ignore[no-untyped-def]
        stack: Stack, service_repo: Path, sandbox_image: str, docker_client, caplog) -> None:  # noqa: F811
    before = stack.state()
    window = 20.0
    sent_before = traffic(stack)
    chaos = ChaosSpec(seed=1, faults=[Fault(kind="canary_regression", tools="service_canary", mode="errors")])
    report = run_with_loop(plan(stack, GOOD, [20, 100], window=window), service_repo, sandbox_image, None,
                           gates=FAST_GATES, policy=ToolPolicy(auto_approve=["*:deploy"]), chaos=chaos)
    steps = {s.step_id: s for s in report.steps}
    assert steps["unit-tests"].ok and steps["integration"].output["failed"] == 0
    canary = steps["canary"].output
    assert canary["decision"] == "rolled_back" and canary["reason"].startswith("step 20 %: 2 failed checks")
    assert "error rate" in canary["reason"]
    assert canary["checks"][-1]["at_seconds"] < window  # rolled back before the first window ended
    assert stack.state() == before and canaries(docker_client, stack) == 0  # stable untouched, canary gone
    during, lost = sent_since(stack, sent_before)
    assert during > 0 and lost == 0, (lost, during)  # the change was good: no request failed, ever
    [fault] = records(caplog, "chaos_fault")
    assert fault["kind"] == "canary_regression" and fault["mode"] == "errors" and fault["tool"] == "service_canary"
    [decision] = records(caplog, "canary_decision")
    assert decision["decision"] == "rolled_back"
