"""Tools that build, test, deploy and roll back a service (the ``upgrade-service`` recipe).

Each is a contract like every other tool: a pydantic input and output model, a name, a
version and an operation the tool policy can gate. ``service_deploy``, ``service_canary`` and
``service_promote`` are ``deploy`` operations and ``service_traffic`` is ``shift-traffic``:
the default policy asks a human first. ``service_rollback`` is never gated.
"""
