"""Environments a service runs in: ephemeral ones for integration tests, and the local
"production" stack (stable replicas and a canary behind a weighted HAProxy).

Everything here is a Docker object carrying the ``org.prefect-agentic.environment`` label, so
that ``agentic canaries`` can find and clean whatever a killed run left behind.
"""
