"""Where the Prefect server's extra CPU for a run of ours goes, priced per API operation.

``bench/scale_out_cpu.py`` finds that a deployed one-step run of ours costs the
server ~0.1 s of CPU more than the plain floor's run (``bench/scale_out_floor.py``),
which is most of the throughput gap ``bench/scale_out.py`` measures. This
bench says what that CPU buys. On a Prefect server on PostgreSQL, with the
stack ``bench/scale_out.py`` deploys (``agentic init``, ``run-plan/default``, the
floors), it

  * runs the floor flow and a one-step plan of ours in this process,
    interleaved, and measures the server's CPU a run of each (``--runs`` each a
    round): their difference is what is to be explained;
  * replays, one kind of operation at a time, the writes the last run of ours
    made that the floor's run does not (the same API calls with the same
    payloads: its artifacts, its own events, the sandbox slot it held, the rename
    of the flow run), ``--ops`` times each, and prices each in server CPU;
  * prices what a deployed run adds: ``submit_plan``'s read of the
    deployment, the worker's and the engine's reads of a deployment whose
    parameter schema is 32 KB (against the floor's), and the crash automations
    of ``agentic init``, which evaluate the events of runs tagged ``agentic``:
    a flow run walked through a run's states (Pending, Running, a heartbeat,
    Completed) through the API, tagged ``agentic``, with the two automations
    enabled against disabled;
  * runs the same-work floor in this process too: plain Prefect making the
    same writes without our code.

Every price is the server's CPU over a block of operations minus its CPU over
an idle block as long, median of ``--rounds`` rounds (the kinds interleaved).
Prints each price, also as a ratio to a read of the floor's deployment, the
sum a run of the replayed writes next to the measured in-process difference,
what a deployed run adds, and the extra server CPU a deployed run of ours is
then expected to cost (to set against ``bench/scale_out.py``'s server split).

Needs what ``bench/scale_out.py`` needs (``make setup``). Usage:
``python bench/server_ops.py [--runs 3] [--ops 30] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scale_out import (
    FLOOR_DEPLOYMENT,
    PREFECT_API_URL,
    PrefectStack,
    by_part,
    deployed_stack,
    make_repo,
    one_step_plan,
    plan_from_data,
    run_plan,
    temporary_settings,
)

OURS_DEPLOYMENT = "run-plan/default"
SLOT_LIMIT = "agentic-bench-server-ops"


@dataclass
class Operation:
    """One kind of API operation: what it is, how many a run makes, and one call of it."""

    name: str
    per_run: int
    call: Callable[[], Any]


def server_cpu(stack: PrefectStack) -> float:
    return by_part(stack.server.pid)["server"]  # type: ignore[union-attr]


def price(stack: PrefectStack, call: Callable[[], Any], times: int, settle: float) -> float:
    """Server CPU-seconds of one ``call``: a block of ``times`` calls (and ``settle`` seconds for
    the server to finish what they queued) minus an idle block as long."""
    before, started = server_cpu(stack), time.monotonic()
    for _ in range(times):
        call()
    _drain_events()
    time.sleep(settle)
    busy, elapsed = server_cpu(stack) - before, time.monotonic() - started
    before = server_cpu(stack)
    time.sleep(elapsed)
    idle = server_cpu(stack) - before
    return (busy - idle) / times


def _drain_events() -> None:
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=30)


def last_run_writes(flow_run_id: Any) -> tuple[list[Any], list[Any]]:
    """The artifacts and the pack's own events of flow run ``flow_run_id``, as the API has them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.events.filters import EventAnyResourceFilter, EventFilter, EventNameFilter

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
        response = client.request("POST", "/events/filter", json={"limit": 50, "filter": EventFilter(
            any_resource=EventAnyResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"]),
            event=EventNameFilter(prefix=["prefect-agentic."])).model_dump(mode="json")})
        events = response.json()["events"]
    return artifacts, events


def replayed_writes(flow_run_id: Any, artifacts: list[Any], events: list[Any]) -> list[Operation]:
    """The writes of a run of ours the floor's run does not make, as calls that make them again."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate
    from prefect.events import emit_event

    from prefect_agentic.concurrency import holding

    client = get_client(sync_client=True)

    def hold_a_slot() -> None:
        with holding({SLOT_LIMIT: 10_000}, lease_seconds=300):
            pass

    operations = [Operation("sandbox slot (acquire + release)", 1, hold_a_slot)]
    for artifact in artifacts:
        create = ArtifactCreate(key=artifact.key, type=artifact.type, description=artifact.description,
                                data=artifact.data, flow_run_id=flow_run_id)
        operations.append(Operation(f"artifact {artifact.type} ({len(str(artifact.data))} B)", 1,
                                    lambda create=create: client.create_artifact(create)))
    for event in events:
        fields = {"event": event["event"], "resource": event["resource"], "related": event["related"],
                  "payload": event["payload"]}
        operations.append(Operation(f"event {event['event']}", 1, lambda fields=fields: emit_event(**fields)))
    operations.append(Operation("flow run rename", 1, lambda: client.update_flow_run(
        flow_run_id, name=f"renamed {secrets.token_hex(3)}")))
    return operations


def deployment_reads(ours_id: Any, floor_id: Any) -> list[Operation]:
    """The deployment reads of a deployed run, each with how many a run makes: ``submit_plan``,
    the worker and the engine read run-plan/default; the worker and the engine read the floor's."""
    from prefect.client.orchestration import get_client

    client = get_client(sync_client=True)
    return [Operation("deployment read, run-plan/default", 3, lambda: client.read_deployment(ours_id)),
            Operation("deployment read, the floor's", 2, lambda: client.read_deployment(floor_id))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="in-process runs of each kind a round")
    parser.add_argument("--ops", type=int, default=30, help="operations of each kind a round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds the server gets after a block to finish what it queued")
    options = parser.parse_args()
    repo, token = make_repo(), secrets.token_hex(4)
    with deployed_stack(token, "agentic_bench_ops") as stack, temporary_settings({PREFECT_API_URL: stack.api_url}):
        report(options, *measure(stack, options, str(repo), token))


def measure(stack: PrefectStack, options: argparse.Namespace, repo: str,
            token: str) -> tuple[dict[str, list[float]], list[Operation], list[Operation]]:
    """Prices (server CPU-seconds) of a run of each kind and of each operation, per round."""
    from prefect.automations import Automation
    from prefect.client.orchestration import get_client
    from prefect.events import emit_event
    from prefect.states import Completed, Pending, Running
    from scale_out_floor import docker_floor, docker_floor_same_work

    from prefect_agentic.automations import CRASH_DETECTOR, CRASH_RETRY, RUN_TAG

    runs = {"ours": 0}
    last: dict[str, Any] = {}

    def floor_run() -> None:
        docker_floor(key=f"{token}-{secrets.token_hex(3)}", label=token)

    def same_work_run() -> None:
        docker_floor_same_work(key=f"{token}-{secrets.token_hex(3)}", label=token, repo=repo)

    def our_run() -> None:
        runs["ours"] += 1
        plan = plan_from_data(one_step_plan(f"ops-{token}-{runs['ours']}"), "bench")
        last["flow_run_id"] = run_plan(plan=plan, repo=repo).flow_run_id

    client = get_client(sync_client=True)
    automations = [Automation.read(name=name) for name in (CRASH_DETECTOR, CRASH_RETRY)]

    def state_walk() -> None:
        """A flow run's life as the server sees it (a worker takes it, it starts, beats, ends)."""
        walked = client.create_flow_run(docker_floor, parameters={"key": token, "label": token}, tags=[RUN_TAG])
        for state in (Pending(), Running()):
            client.set_flow_run_state(walked.id, state, force=True)
        emit_event(event="prefect.flow-run.heartbeat", resource={"prefect.resource.id": f"prefect.flow-run.{walked.id}"},
                   related=[{"prefect.resource.id": f"prefect.tag.{RUN_TAG}", "prefect.resource.role": "tag"}])
        client.set_flow_run_state(walked.id, Completed(), force=True)

    def switch(on: bool) -> Callable[[], None]:
        def turn() -> None:
            for automation in automations:
                automation.enable() if on else automation.disable()
            time.sleep(options.settle)  # the server's triggers service loads the change
        return turn

    our_run()
    floor_run()
    same_work_run()  # every kind warm: imports, clients, the sandbox image's first use
    writes = replayed_writes(last["flow_run_id"], *last_run_writes(last["flow_run_id"]))
    reads = deployment_reads(client.read_deployment_by_name(OURS_DEPLOYMENT).id,
                             client.read_deployment_by_name(FLOOR_DEPLOYMENT).id)
    prices: dict[str, list[float]] = {}
    for round_ in range(options.rounds):
        kinds = [("floor run", floor_run, options.runs, None), ("our run", our_run, options.runs, None),
                 ("same-work run", same_work_run, options.runs, None),
                 *((op.name, op.call, options.ops, None) for op in writes + reads),
                 ("states, automations on", state_walk, options.ops, switch(on=True)),
                 ("states, automations off", state_walk, options.ops, switch(on=False))]
        for name, call, times, before in kinds if round_ % 2 == 0 else reversed(kinds):
            if before is not None:
                before()
            prices.setdefault(name, []).append(price(stack, call, times, options.settle))
        switch(on=True)()
        print(f"round {round_ + 1}: floor run {prices['floor run'][-1] * 1000:.0f} ms, "
              f"our run {prices['our run'][-1] * 1000:.0f} ms of server CPU", flush=True)
    return prices, writes, reads


def report(options: argparse.Namespace, prices: dict[str, list[float]], writes: list[Operation],
           reads: list[Operation]) -> None:
    from prefect_agentic.automations import RUN_TAG

    ms = {name: statistics.median(values) * 1000 for name, values in prices.items()}
    baseline = ms["deployment read, the floor's"]
    print(f"\nserver CPU, median of {options.rounds} rounds ({options.runs} runs, {options.ops} operations "
          f"of each kind a round); PostgreSQL server; ratio to a read of the floor's deployment")
    print(f"  {'a floor run (in this process)':46s} {ms['floor run']:7.1f} ms")
    print(f"  {'a run of ours (in this process)':46s} {ms['our run']:7.1f} ms")
    measured = ms["our run"] - ms["floor run"]
    print(f"  {'difference, to explain':46s} {measured:+7.1f} ms")
    print(f"  {'a same-work run (in this process)':46s} {ms['same-work run']:7.1f} ms  "
          f"(ours {ms['our run'] - ms['same-work run']:+.1f} ms)")
    print("writes of a run of ours the floor's run does not make, replayed:")
    explained = 0.0
    for op in writes:
        explained += ms[op.name] * op.per_run
        print(f"  {op.name:46s} {ms[op.name]:7.1f} ms  x{op.per_run}  ({ms[op.name] / baseline:4.1f}x a read)")
    print(f"  {'sum a run':46s} {explained:+7.1f} ms  ({explained / measured:.0%} of the difference)"
          if measured > 0 else f"  {'sum a run':46s} {explained:+7.1f} ms")
    ours_reads, floor_reads = reads
    ours_read, floor_read = ms[ours_reads.name], ms[floor_reads.name]
    reads_cost = ours_reads.per_run * ours_read - floor_reads.per_run * floor_read
    automations = ms["states, automations on"] - ms["states, automations off"]
    print("what a deployed run of ours adds (submit_plan reads the deployment; the worker's and the "
          "engine's reads are of a 32 KB schema; its tag arms the crash automations):")
    print(f"  {ours_reads.name:46s} {ours_read:7.1f} ms  x{ours_reads.per_run}  ({ours_read / baseline:4.1f}x the floor's)")
    print(f"  {floor_reads.name:46s} {floor_read:7.1f} ms  x{floor_reads.per_run}")
    print(f"  {'the reads, a deployed run':46s} {reads_cost:+7.1f} ms")
    print(f"  {'crash automations':46s} {automations:+7.1f} ms  (a run's states, tagged '{RUN_TAG}' as "
          f"deployed runs are: {ms['states, automations on']:.1f} ms with them, "
          f"{ms['states, automations off']:.1f} ms without)")
    print(f"expected extra server CPU of a deployed run of ours over the floor's: "
          f"{measured + reads_cost + automations:+.0f} ms (the in-process difference, the reads, the automations)")


if __name__ == "__main__":
    main()
