"""Where a machine's CPU time goes: its busy time, and the share of the Prefect server, PostgreSQL
and the Docker engine, read from /proc (shared by the benches that charge CPU to runs)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all the machine's cores since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_fraction(before: tuple[int, int], after: tuple[int, int]) -> float:
    return (after[0] - before[0]) / max(1, after[1] - before[1])


def machine_busy() -> float:
    """CPU-seconds the whole machine has spent busy since boot (all cores)."""
    return cpu_times()[0] / TICKS


def processes() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, command line, CPU-seconds of it and its reaped children)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended meanwhile
        ticks = sum(int(v) for v in stat[11:15])  # utime, stime, cutime, cstime
        found[int(entry.name)] = (int(stat[1]), command, ticks / TICKS)
    return found


def tree(found: dict[int, tuple[int, str, float]], root: int) -> float:
    """CPU-seconds of the process ``root`` and every process under it (reaped ones included)."""
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        if pid in found:
            total += found[pid][2]
            stack.extend(p for p, (parent, _, _) in found.items() if parent == pid)
    return total


def by_part(server_pid: int, worker_pid: int | None = None) -> Counter[str]:
    """CPU-seconds so far of the server's process tree, PostgreSQL, the Docker engine and
    (with ``worker_pid``) a worker's process tree."""
    found = processes()
    parts: Counter[str] = Counter(server=tree(found, server_pid))
    if worker_pid is not None:
        parts["flow run"] = tree(found, worker_pid)
    for _, command, cpu in found.values():
        if command.startswith("postgres"):
            parts["postgres"] += cpu
        elif command.startswith(("/usr/sbin/dockerd", "dockerd", "containerd ", "/usr/bin/containerd ")):
            parts["engine"] += cpu
    return parts
