"""Graph facts about a plan's steps: order, ancestry, cycles, snapshot sources."""

from __future__ import annotations

from collections.abc import Sequence

from prefect_agentic.plan.models import Step


def find_cycle(steps: Sequence[Step]) -> list[str] | None:
    """A dependency cycle as a list of step ids (first id repeated last), or None."""
    deps = {s.id: [d for d in s.depends_on] for s in steps}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in deps.get(node, []):
            if dep not in deps:
                continue
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for step in steps:
        if step.id not in state and (cycle := visit(step.id)):
            return cycle
    return None


def topological_order(steps: Sequence[Step]) -> list[str]:
    """Step ids so that every step comes after its dependencies; ties keep file order.

    The plan must be acyclic (``find_cycle`` returned None).
    """
    position = {s.id: i for i, s in enumerate(steps)}
    remaining = {s.id: set(s.depends_on) for s in steps}
    order: list[str] = []
    while remaining:
        ready = sorted((i for i, d in remaining.items() if not d), key=position.__getitem__)
        if not ready:
            raise ValueError("plan has a dependency cycle")
        for step_id in ready:
            order.append(step_id)
            del remaining[step_id]
        for deps in remaining.values():
            deps.difference_update(ready)
    return order


def ancestors(steps: Sequence[Step]) -> dict[str, set[str]]:
    """For each step, every step it transitively depends on."""
    by_id = {s.id: s for s in steps}
    result: dict[str, set[str]] = {}
    for step_id in topological_order(steps):
        found: set[str] = set()
        for dep in by_id[step_id].depends_on:
            found.add(dep)
            found |= result[dep]
        result[step_id] = found
    return result


def concurrent_writer_pairs(steps: Sequence[Step]) -> list[tuple[str, str]]:
    """Pairs (writer, other) of steps that could run at the same time.

    A step that writes the workspace must be ordered (through depends_on)
    against every other step: all steps share one workspace, and a step must
    see exactly the snapshot it starts from.
    """
    anc = ancestors(steps)
    pairs = []
    for writer in (s for s in steps if s.writes_workspace):
        for other in steps:
            if other.id == writer.id:
                continue
            if other.id not in anc[writer.id] and writer.id not in anc[other.id]:
                if not (other.writes_workspace and (other.id, writer.id) in pairs):
                    pairs.append((writer.id, other.id))
    return pairs


def snapshot_sources(steps: Sequence[Step]) -> dict[str, str | None]:
    """For each step, the step whose output snapshot it starts from.

    That is the latest workspace-writing ancestor (writers are totally ordered
    against every step, so the latest one is well defined); None means the
    step starts from the run's base snapshot.
    """
    anc = ancestors(steps)
    writers = {s.id for s in steps if s.writes_workspace}
    sources: dict[str, str | None] = {}
    for step in steps:
        candidates = anc[step.id] & writers
        sources[step.id] = max(candidates, key=lambda w: len(anc[w]), default=None)
    return sources
