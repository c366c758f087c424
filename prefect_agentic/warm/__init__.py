"""Warm start: flow-run processes forked from a process that has Prefect and the pack imported.

A process worker starts each flow run as a new Python process, and Prefect's
default launch is two of them (a supervisor that prepares the run, then the
engine), each importing Prefect from scratch: seconds of CPU before the run's
first line. For a run that comes back after an approval at a suspended gate,
that start-up is nearly all the approver's wait.

``agentic worker`` serves a process work pool like ``prefect worker start`` does,
but launches each flow run through ``launch``: a small stdlib-only process that
hands its standard streams and environment to a *warm process* (``server``),
which forks a child that runs ``prefect.engine`` exactly as ``python -m
prefect.engine`` would, with the imports already done. The launcher stays the
flow run's process for the worker (its pid, its exit status, its signals).
When no warm process answers, the launcher starts one for the next run and
runs this one the cold way: nothing is ever lost by the warm path being absent.
"""
