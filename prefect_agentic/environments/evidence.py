"""The canary's evidence for approvers and the audit: a table and a small SVG chart."""

from __future__ import annotations

import base64

from prefect_agentic.environments.rollout import RolloutResult

WIDTH, HEIGHT, PAD = 560, 200, 36


def checks_table(result: RolloutResult) -> list[dict[str, object]]:
    return [c.model_dump() for c in result.checks]


def chart_svg(result: RolloutResult) -> str:
    """Error rate (red) and latency percentile (blue) per check, thresholds dashed, share as bars."""
    checks = result.checks
    t = result.thresholds
    if not checks:
        return f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}"></svg>'
    span = max(c.at_seconds for c in checks) or 1.0
    top_latency = max([t.max_latency_ms * 1.2] + [c.latency_ms or 0 for c in checks])
    top_error = max([t.max_error_rate * 2, 0.01] + [c.error_rate for c in checks])

    def x(seconds: float) -> float:
        return PAD + (WIDTH - 2 * PAD) * seconds / span

    def y(value: float, top: float) -> float:
        return HEIGHT - PAD - (HEIGHT - 2 * PAD) * min(value / top, 1.0)

    bars = "".join(f'<rect x="{x(c.at_seconds) - 3:.1f}" y="{y(c.share, 100):.1f}" width="6" '
                   f'height="{HEIGHT - PAD - y(c.share, 100):.1f}" fill="#ddd"/>' for c in checks)
    errors = " ".join(f"{x(c.at_seconds):.1f},{y(c.error_rate, top_error):.1f}" for c in checks)
    latency = " ".join(f"{x(c.at_seconds):.1f},{y(c.latency_ms or 0, top_latency):.1f}" for c in checks)
    line = '<line x1="{a}" x2="{b}" y1="{v:.1f}" y2="{v:.1f}" stroke="{c}" stroke-dasharray="4 3"/>'
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" '
        f'font-size="11"><rect width="100%" height="100%" fill="white"/>{bars}'
        + line.format(a=PAD, b=WIDTH - PAD, v=y(t.max_error_rate, top_error), c="#c0392b")
        + line.format(a=PAD, b=WIDTH - PAD, v=y(t.max_latency_ms, top_latency), c="#2471a3")
        + f'<polyline points="{errors}" fill="none" stroke="#c0392b" stroke-width="2"/>'
        f'<polyline points="{latency}" fill="none" stroke="#2471a3" stroke-width="2"/>'
        f'<text x="{PAD}" y="14">{result.decision}: error rate (red, limit {t.max_error_rate:g}), '
        f'p{t.latency_percentile:g} ms (blue, limit {t.max_latency_ms:g}), canary share (grey)</text>'
        f'<text x="{PAD}" y="{HEIGHT - 10}">0 s</text><text x="{WIDTH - PAD - 30}" y="{HEIGHT - 10}">'
        f'{span:.0f} s</text></svg>')


def markdown(result: RolloutResult, stack: str) -> str:
    t = result.thresholds
    svg = base64.b64encode(chart_svg(result).encode()).decode()
    rows = "\n".join(f"| {s.share} % | {s.requests} | {s.error_rate:.3f} | {_ms(s.latency_ms)} | {s.result} | {s.reason} |"
                     for s in result.steps)
    checks = "\n".join(f"| {c.at_seconds:g} | {c.share} % | {c.requests} | {c.error_rate:.3f} | {_ms(c.latency_ms)} | "
                       f"{'yes' if c.canary_healthy else 'NO'} | {c.stable_healthy} | {c.result} | {c.reason} |"
                       for c in result.checks)
    return f"""# Canary of `{stack}`: **{result.decision.replace('_', ' ')}**

{result.reason}

- canary: `{result.image}`; stable before: `{result.stable_before}`; stable after: `{result.stable_after}`
- thresholds: error rate ≤ {t.max_error_rate:g}, p{t.latency_percentile:g} ≤ {t.max_latency_ms:g} ms, \
≥ {t.min_requests} requests per {t.window_seconds:g} s window, checks every {t.interval_seconds:g} s, \
rollback after {t.failure_limit} failed checks

![canary metrics](data:image/svg+xml;base64,{svg})

| step | requests | error rate | p{t.latency_percentile:g} | result | reason |
|---|---|---|---|---|---|
{rows}

| t (s) | share | requests | error rate | p{t.latency_percentile:g} | canary healthy | stable healthy | check | reason |
|---|---|---|---|---|---|---|---|---|
{checks}
"""


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:g} ms"
