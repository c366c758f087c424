"""Reading a container's cgroup counters: refused forks, OOM kills, CPU time.

Docker's API does not say whether a command hit its process limit, and says
"OOMKilled" only when the container's first process died of it. The kernel's
cgroup counters say both, and give the CPU time that budgets charge. They are
readable when the engine runs on this machine (cgroup v1 or v2); elsewhere
``read_counters`` returns None and results carry no limit details.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class CgroupCounters:
    pids_refused: int = 0
    oom_kills: int = 0
    cpu_ns: int = 0

    def since(self, before: CgroupCounters | None) -> CgroupCounters:
        if before is None:
            return self
        return CgroupCounters(self.pids_refused - before.pids_refused,
                              self.oom_kills - before.oom_kills, self.cpu_ns - before.cpu_ns)


def _field(path: Path, key: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        return None
    return None


def _number(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _v1_pids(container_id: str) -> Path:
    return CGROUP_ROOT / "pids" / "docker" / container_id


def _v2_dirs(container_id: str) -> tuple[Path, Path]:
    """Where cgroup v2 puts a container: Docker's cgroupfs driver, or systemd's."""
    return CGROUP_ROOT / "docker" / container_id, CGROUP_ROOT / "system.slice" / f"docker-{container_id}.scope"


def read_counters(container_id: str) -> CgroupCounters | None:
    """The container's counters now, or None if its cgroup is not readable here."""
    v1_pids = _v1_pids(container_id)
    if v1_pids.is_dir():
        pids = _field(v1_pids / "pids.events", "max")
        oom = _field(CGROUP_ROOT / "memory" / "docker" / container_id / "memory.oom_control", "oom_kill")
        cpu = _number(CGROUP_ROOT / "cpuacct" / "docker" / container_id / "cpuacct.usage")
        if pids is None:
            return None
        return CgroupCounters(pids, oom or 0, cpu or 0)
    for v2 in _v2_dirs(container_id):
        if v2.is_dir():
            pids = _field(v2 / "pids.events", "max")
            oom = _field(v2 / "memory.events", "oom_kill")
            usec = _field(v2 / "cpu.stat", "usage_usec")
            if pids is None:
                return None
            return CgroupCounters(pids, oom or 0, (usec or 0) * 1000)
    return None


def task_count(container_id: str) -> int | None:
    """How many tasks (processes and threads) the container's cgroup holds now; None if unreadable here.

    Read on the host, so nothing inside the container can make it lie.
    """
    for directory in (_v1_pids(container_id), *_v2_dirs(container_id)):
        count = _number(directory / "pids.current")
        if count is not None:
            return count
    return None


class CounterSampler:
    """Samples a running container's counters until stopped; keeps the last reading.

    For a container per step: its cgroup disappears the moment it exits, so
    the counters are read while it runs.
    """

    def __init__(self, container_id: str, interval: float = 0.2) -> None:
        self._container_id = container_id
        self._interval = interval
        self._stop = threading.Event()
        self.last: CgroupCounters | None = None
        self._thread = threading.Thread(target=self._loop, name="sandbox-cgroup", daemon=True)

    def _loop(self) -> None:
        while True:
            reading = read_counters(self._container_id)
            if reading is not None:
                self.last = reading
            if self._stop.wait(self._interval):
                return

    def start(self) -> CounterSampler:
        self._thread.start()
        return self

    def stop(self) -> CgroupCounters | None:
        reading = read_counters(self._container_id)
        if reading is not None:
            self.last = reading
        self._stop.set()
        self._thread.join(timeout=2)
        return self.last
