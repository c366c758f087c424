"""Canary analysis, judged the way Argo Rollouts and Flagger judge it.

Every ``interval`` the canary's Prometheus counters are read and the interval's error rate and
latency percentile are compared with the thresholds; an interval with fewer requests than
``min_interval_requests`` is inconclusive and counts for nothing. ``failure_limit`` failed
checks roll the canary back at once. A step of the rollout passes when its whole observation
window held: enough requests, error rate and percentile under their limits, the canary healthy.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

_SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class Thresholds(BaseModel):
    """When a canary is bad, and how long and how often it is watched."""

    model_config = ConfigDict(extra="forbid")

    max_error_rate: float = Field(default=0.05, ge=0, le=1, description="Share of 5xx answers allowed.")
    max_latency_ms: float = Field(default=500, gt=0, description="Limit of the latency percentile, in ms.")
    latency_percentile: float = Field(default=95, gt=0, lt=100, description="Which percentile is judged.")
    min_requests: int = Field(default=20, ge=1, description="Requests a step's window needs to be judged.")
    min_interval_requests: int = Field(default=5, ge=1, description="Requests an interval needs to count.")
    failure_limit: int = Field(default=2, ge=1, description="Failed checks that roll the canary back.")
    window_seconds: float = Field(default=30, gt=0, le=3600, description="Observation window of each step.")
    interval_seconds: float = Field(default=2, gt=0, le=300, description="Time between two checks.")


@dataclass(frozen=True)
class Counters:
    """The cumulative counters of one /metrics scrape."""

    requests: float
    errors: float
    buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count), +Inf last

    def minus(self, earlier: Counters) -> Counters:
        """What happened since ``earlier`` (a restarted process starts its counters again)."""
        if self.requests < earlier.requests:
            return self
        before = dict(earlier.buckets)
        return Counters(self.requests - earlier.requests, self.errors - earlier.errors,
                        tuple((le, n - before.get(le, 0)) for le, n in self.buckets))

    def plus(self, other: Counters) -> Counters:
        more = dict(other.buckets)
        return Counters(self.requests + other.requests, self.errors + other.errors,
                        tuple((le, n + more.get(le, 0)) for le, n in self.buckets) if self.buckets else other.buckets)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def percentile_ms(self, percentile: float) -> float | None:
        """The percentile from the histogram, interpolated inside its bucket (as histogram_quantile)."""
        total = self.buckets[-1][1] if self.buckets else 0
        if not total:
            return None
        rank = total * percentile / 100
        lower, below = 0.0, 0.0
        for bound, count in self.buckets:
            if count >= rank:
                if math.isinf(bound):
                    return lower * 1000
                inside = count - below
                return (lower + (bound - lower) * ((rank - below) / inside if inside else 1)) * 1000
            lower, below = bound, count
        return lower * 1000


EMPTY = Counters(0, 0, ())


def parse_metrics(text: str) -> Counters:
    """``http_requests_total{code}`` and ``http_request_duration_seconds_bucket{le}`` of a scrape."""
    requests = errors = 0.0
    buckets = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match or line.startswith("#"):
            continue
        labels = dict(_LABEL.findall(match["labels"] or ""))
        value = float(match["value"])
        if match["name"] == "http_requests_total":
            requests += value
            errors += value if labels.get("code", "").startswith("5") else 0
        elif match["name"] == "http_request_duration_seconds_bucket":
            buckets.append((float(labels["le"]), value))
    return Counters(requests, errors, tuple(sorted(buckets)))


class Check(BaseModel):
    """One interval of the analysis, as shown in the evidence."""

    at_seconds: float
    share: int
    requests: int
    error_rate: float
    latency_ms: float | None
    canary_healthy: bool
    stable_healthy: int
    result: Literal["pass", "fail", "inconclusive"]
    reason: str = ""


def judge_interval(delta: Counters, healthy: bool, t: Thresholds) -> tuple[str, str]:
    """``(result, reason)`` of one interval."""
    if not healthy:
        return "fail", "canary /health did not answer 200"
    if delta.requests < t.min_interval_requests:
        return "inconclusive", f"{delta.requests:.0f} requests < {t.min_interval_requests}"
    return judge_numbers(delta, t)


def judge_numbers(counters: Counters, t: Thresholds) -> tuple[str, str]:
    latency = counters.percentile_ms(t.latency_percentile)
    if counters.error_rate > t.max_error_rate:
        return "fail", f"error rate {counters.error_rate:.3f} > {t.max_error_rate:g}"
    if latency is not None and latency > t.max_latency_ms:
        return "fail", f"p{t.latency_percentile:g} latency {latency:.0f} ms > {t.max_latency_ms:g} ms"
    return "pass", ""


def judge_window(window: Counters, t: Thresholds) -> tuple[str, str]:
    """Whether a step's whole window held."""
    if window.requests < t.min_requests:
        return "fail", f"only {window.requests:.0f} requests in the window (< min_requests {t.min_requests})"
    return judge_numbers(window, t)
