"""A canary rollout: deploy, shift traffic step by step under analysis, then promote or roll back.

The rollback runs on every way out that is not a promotion: a breached threshold, a window
without enough traffic, the rollout's deadline, and any exception (``finally``). A process
killed outright cannot run it; its re-run finds the canary by label and carries on from there
(a canary of the same version is taken over and re-analysed from the first step; one of
another version is rolled back first), and ``agentic canaries rollback`` undoes it by hand.

With ``hold`` the rollout stops after its last share without promoting: the canary is left
serving that share (decision ``held``) for a promotion gate; the next rollout of the same image
takes it over, and a run that stops at the gate rolls it back (``roll_back_held``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Literal

from pydantic import BaseModel

from prefect_agentic.environments.analysis import (
    EMPTY,
    Check,
    Counters,
    Thresholds,
    judge_interval,
    judge_window,
    parse_metrics,
)
from prefect_agentic.environments.stack import Stack

metrics_filter: ContextVar[Callable[[Counters], Counters] | None] = ContextVar("agentic_canary_metrics", default=None)
"""What this thread's canary scrapes go through before they are judged (a chaos run's ``canary_regression``)."""


class StepSummary(BaseModel):
    share: int
    requests: int
    error_rate: float
    latency_ms: float | None
    result: Literal["pass", "fail"]
    reason: str = ""


class RolloutResult(BaseModel):
    decision: Literal["promoted", "rolled_back", "held"]
    reason: str
    image: str
    stable_before: str | None
    stable_after: str | None
    took_over_canary: bool
    thresholds: Thresholds
    steps: list[StepSummary]
    checks: list[Check]


def run_canary(stack: Stack, image: str, shares: list[int], thresholds: Thresholds,
               timeout_seconds: float, on_check: Callable[[Check], None] = lambda c: None,
               hold: bool = False) -> RolloutResult:
    before = stack.state()
    took_over = before.canary_version == image
    stack.deploy_canary(image)
    checks: list[Check] = []
    steps: list[StepSummary] = []
    started = time.monotonic()
    deadline = started + timeout_seconds
    decision, reason = "rolled_back", "the rollout did not finish"
    try:
        for share in shares:
            stack.set_canary_share(share)
            ok, why, summary = _observe(stack, share, thresholds, started, deadline, checks, on_check)
            steps.append(summary)
            if not ok:
                reason = f"step {share} %: {why}"
                break
        else:
            held = f"every step held its window ({', '.join(f'{s} %' for s in shares)})"
            if hold:
                decision, reason = "held", f"{held}; the canary waits at {shares[-1]} % for promotion"
            else:
                stack.promote()
                decision, reason = "promoted", held
    finally:
        if decision == "rolled_back":
            stack.rollback()
    return RolloutResult(decision=decision, reason=reason, image=image, stable_before=before.stable_version,
                         stable_after=stack.state().stable_version, took_over_canary=took_over,
                         thresholds=thresholds, steps=steps, checks=checks)


def _observe(stack: Stack, share: int, t: Thresholds, started: float, deadline: float,
             checks: list[Check], on_check: Callable[[Check], None]) -> tuple[bool, str, StepSummary]:
    """Watch one step's window; (held, why not, summary)."""
    replicas = [f"stable-{i}" for i in range(1, stack.replicas + 1)]
    last = _scrape(stack, replicas)[0]
    window = EMPTY
    failures = 0
    end = time.monotonic() + t.window_seconds
    while True:
        time.sleep(max(0.0, min(t.interval_seconds, end - time.monotonic())))
        current, healthy, stable_ok = _scrape(stack, replicas)
        delta = current.minus(last)
        last = current
        window = delta if window is EMPTY else window.plus(delta)
        result, why = judge_interval(delta, healthy, t)
        if stable_ok == 0:
            result, why = "fail", "no stable replica is healthy"
        check = Check(at_seconds=round(time.monotonic() - started, 1), share=share, requests=int(delta.requests),
                      error_rate=round(delta.error_rate, 4), latency_ms=_round(delta.percentile_ms(t.latency_percentile)),
                      canary_healthy=healthy, stable_healthy=stable_ok, result=result, reason=why)  # type: ignore[arg-type]
        checks.append(check)
        on_check(check)
        failures += result == "fail"
        if failures >= t.failure_limit:
            return False, f"{failures} failed checks (failure_limit {t.failure_limit}); last: {why}", \
                _summary(share, window, t, "fail", why)
        if time.monotonic() >= deadline:
            return False, "the rollout's deadline passed", _summary(share, window, t, "fail", "deadline")
        if time.monotonic() >= end:
            held, why = judge_window(window, t)
            return held == "pass", why, _summary(share, window, t, held, why)


def _scrape(stack: Stack, replicas: list[str]) -> tuple[Counters, bool, int]:
    probes = stack.probe(["canary", *replicas])
    canary = probes["canary"]
    counters = parse_metrics(canary["metrics"][1]) if canary["metrics"][0] == 200 else EMPTY
    spoil = metrics_filter.get()
    if spoil is not None:
        counters = spoil(counters)
    stable_ok = sum(probes[r]["health"][0] == 200 for r in replicas)
    return counters, canary["health"][0] == 200, stable_ok


def _summary(share: int, window: Counters, t: Thresholds, result: str, reason: str) -> StepSummary:
    return StepSummary(share=share, requests=int(window.requests), error_rate=round(window.error_rate, 4),
                       latency_ms=_round(window.percentile_ms(t.latency_percentile)),
                       result=result, reason=reason)  # type: ignore[arg-type]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
