"""What a cold flow-run process spends loading its flow: the floor's, ours, and ours on a Prefect changed upstream.

A flow-run process started by ``prefect worker start`` imports Prefect's engine,
then the deployment's flow module, then validates the run's parameters against
the flow's signature. This bench times exactly that part (CPU of the process,
in fresh processes, kinds interleaved, medians) for:

  * floor: ``bench/scale_out_floor.py`` (plain Prefect, docker SDK), its flow's parameters;
  * floor with a block parameter: the same, plus a plain Prefect flow taking one of Prefect's own
    blocks (a ``Secret``) validated from its document. Prefect imports every installed collection
    whole before it looks a block class up by slug (``Block.get_block_class_from_key``), so with
    prefect-docker installed (a core dependency of ours) any flow with a block parameter imports
    prefect-docker's worker, and with it ``prefect.workers``;
  * ours: ``prefect_agentic.flows.run_plan`` with the parameters ``scale_out.py`` submits
    (a one-step plan, a repository path, the sandbox settings as a block document);
  * ours, Prefect changed: the same, in a process where three upstream changes are
    simulated before anything loads (this bench's only patching; see ``bench/patches/``):
      - ``Flow()`` does not build the parameter schema (Prefect builds it in every process
        that loads a flow, though only deployment code reads it);
      - every ``Block`` class is registered by its slug, not by building its whole schema
        (what ``prefect_agentic.blocks.registration`` does for our own block classes, here for
        prefect-docker's too);
      - collections are loaded without their workers: prefect-docker's package is made importable
        without running its ``__init__`` (which imports its worker). Not a patch: Prefect finds
        worker types through the same collection loading, so this one needs Prefect to load a
        collection's worker only when it looks a worker type up.

The gap between the last two is what those upstream changes would take off each run; the
gap between the floor and the last is ours (plus GitPython, a core dependency of ours).

Usage: ``python bench/cold_import.py [--runs 9]``. Needs only the pack installed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
KINDS = ("floor", "floor with a block parameter", "ours", "ours, Prefect changed")

_CHILD = r"""
import json, sys, time
kind = sys.argv[1]
if kind == "ours, Prefect changed":
    import importlib.util
    spec = importlib.util.find_spec("prefect_docker")
    package = importlib.util.module_from_spec(spec)  # the package, its __init__ not run
    sys.modules["prefect_docker"] = package
started = time.process_time()
import prefect.engine  # what every flow-run process has loaded before its flow
engine = time.process_time()
if kind == "ours, Prefect changed":
    import prefect.flows
    from prefect.blocks.core import Block
    prefect.flows.parameter_schema = lambda fn: None
    Block.__dispatch_key__ = classmethod(lambda cls: None if cls.__name__ == "Block" else cls.get_block_type_slug())
if kind.startswith("floor"):
    sys.path.insert(0, sys.argv[2])
    from scale_out_floor import docker_floor_same_work as flow
    parameters = {"key": "k", "label": "l", "repo": "/tmp/r"}
else:
    from prefect_agentic.blocks import SandboxSettings
    from prefect_agentic.flows.run_plan import run_plan as flow
    parameters = {"plan": {"id": "p", "goal": "g", "steps": [{"id": "work", "tool": "shell",
                                                                "args": {"command": "sleep 1"}}]},
                  "repo": "/tmp/r", "sandbox": SandboxSettings().model_dump(mode="json")}
if kind == "floor with a block parameter":
    from prefect import flow as flow_decorator
    from prefect.blocks.system import Secret

    def with_block(secret: Secret) -> None:
        pass

    flow_decorator(with_block).validate_parameters({"secret": {"value": "s", "block_type_slug": "secret"}})
flow.validate_parameters(parameters)
done = time.process_time()
print(json.dumps({"engine": engine - started, "flow": done - engine,
                  "prefect_docker worker": "prefect_docker.worker" in sys.modules}))
"""


def measure(kind: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", _CHILD, kind, str(BENCH)], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind}: {done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="fresh processes of each kind")
    options = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
    for i in range(-1, options.runs):  # -1: untimed, warms the page cache
        for kind in KINDS if i % 2 == 0 else KINDS[::-1]:
            result = measure(kind)
            if i >= 0:
                results[kind].append(result)
    print(f"CPU of a fresh process loading its flow and validating its parameters; median of {options.runs}")
    print(f"  {'':28s} {'engine':>8s} {'flow':>8s}  prefect-docker's worker loaded")
    flows = {}
    for kind, rows in results.items():
        flows[kind] = statistics.median(r["flow"] for r in rows)
        loaded = {bool(r["prefect_docker worker"]) for r in rows}
        print(f"  {kind:28s} {statistics.median(r['engine'] for r in rows) * 1000:6.0f} ms "
              f"{flows[kind] * 1000:6.0f} ms  {'yes' if loaded == {True} else 'no' if loaded == {False} else 'mixed'}")
    print(f"a block parameter in plain Prefect: {(flows['floor with a block parameter'] - flows['floor']) * 1000:+.0f} ms")
    print(f"ours - floor: {(flows['ours'] - flows['floor']) * 1000:+.0f} ms; of it, Prefect and prefect-docker "
          f"as they are: {(flows['ours'] - flows['ours, Prefect changed']) * 1000:+.0f} ms; the rest: "
          f"{(flows['ours, Prefect changed'] - flows['floor']) * 1000:+.0f} ms")


if __name__ == "__main__":
    main()
