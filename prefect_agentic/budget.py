"""Metering a run against its budget.

One ``BudgetMeter`` per run and process counts what the run's steps spend.
``charge`` is called before the thing it counts happens (a step, a tool
call, a retry) and refuses it when the hard limit would be passed; amounts
known only afterwards (CPU-seconds, cost) are added and stop the next charge.
Crossing the warning fraction calls ``on_warning`` once per meter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prefect_agentic.blocks.budget import Budget
from prefect_agentic.errors import BudgetExceededError

UPFRONT = ("steps", "tool_calls", "retries")
"""Meters charged before the counted action: reaching the limit refuses the action."""


@dataclass(frozen=True)
class BudgetWarning:
    meter: str
    used: float
    limit: float

    def message(self) -> str:
        return f"budget: {self.meter} at {self.used:g} of {self.limit:g} ({self.used / self.limit:.0%})"


@dataclass
class BudgetMeter:
    budget: Budget
    started: float = field(default_factory=time.time)
    """When the run started (epoch seconds): wall-clock time counts from there."""
    on_warning: Callable[[BudgetWarning], None] = lambda warning: None
    used: dict[str, float] = field(default_factory=dict)
    exhausted: str | None = None
    _warned: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def charge(self, meter: str, amount: float = 1.0) -> None:
        """Count ``amount`` of ``meter``; raise ``BudgetExceededError`` if a hard limit stops it."""
        self.check()
        limit = self.budget.limits().get(meter)
        with self._lock:
            used = self.used.get(meter, 0.0)
            if limit is not None and meter in UPFRONT and used + amount > limit:
                self.exhausted = self.exhausted or self._reason(meter, used, limit)
                raise BudgetExceededError(meter, self.exhausted)
            self.used[meter] = used + amount
        self._maybe_warn(meter, used + amount, limit)

    def add(self, meter: str, amount: float) -> None:
        """Count an amount known only afterwards (CPU-seconds, cost); the next charge enforces it."""
        with self._lock:
            self.used[meter] = self.used.get(meter, 0.0) + amount
            used = self.used[meter]
        self._maybe_warn(meter, used, self.budget.limits().get(meter))

    def check(self) -> None:
        """Raise if any limit is already used up (including wall-clock time)."""
        self._tick_clock()
        with self._lock:
            if self.exhausted is None:
                for meter, limit in self.budget.limits().items():
                    if meter not in UPFRONT and self.used.get(meter, 0.0) >= limit:
                        self.exhausted = self._reason(meter, self.used[meter], limit)
            if self.exhausted is not None:
                raise BudgetExceededError(self.exhausted.split(" ", 1)[0], self.exhausted)

    def remaining_seconds(self) -> float | None:
        """Wall-clock seconds left, to cap a command's timeout; ``None`` when unlimited."""
        limit = self.budget.max_wall_clock_seconds
        return None if limit is None else max(0.0, limit - (time.time() - self.started))

    def snapshot(self) -> dict[str, dict[str, float]]:
        self._tick_clock()
        limits = self.budget.limits()
        with self._lock:
            return {name: {"used": round(self.used.get(name, 0.0), 3), "limit": limit}
                    for name, limit in limits.items()}

    def _tick_clock(self) -> None:
        if self.budget.max_wall_clock_seconds is not None:
            elapsed = time.time() - self.started
            with self._lock:
                self.used["wall_clock_seconds"] = elapsed
            self._maybe_warn("wall_clock_seconds", elapsed, self.budget.max_wall_clock_seconds)

    def _maybe_warn(self, meter: str, used: float, limit: float | None) -> None:
        if limit is None or used < self.budget.warn_at * limit:
            return
        with self._lock:
            if meter in self._warned:
                return
            self._warned.add(meter)
        self.on_warning(BudgetWarning(meter, used, limit))

    @staticmethod
    def _reason(meter: str, used: float, limit: float) -> str:
        return (f"{meter} limit of {limit:g} reached (used {used:g}); the run stopped and keeps "
                "its work: run it again with a larger budget to resume")
