"""Deployment steps for ``prefect.yaml`` (``prefect_agentic.deployments.steps.<name>``).

Prefect runs a build step at ``prefect deploy`` time, on the deploying machine;
a step that raises stops that deployment before it is created. The pack uses
that to refuse deployments that could never run: a scheduled recipe with no
repository to work on would fail every night instead of once, at deploy time.
"""

from __future__ import annotations

import os

from prefect_agentic.errors import AgenticError


class DeploymentConfigError(AgenticError):
    """A deployment of ``prefect.yaml`` lacks a setting it cannot run without."""


def require_repository(deployment: str, env: str, repo: str | None = None) -> dict[str, str]:
    """The repository a deployment works on: ``repo`` if given, else the variable ``env``.

    Returns ``{"repo": ...}`` for the deployment's parameters
    (``repo: "{{ <step id>.repo }}"``); raises ``DeploymentConfigError`` when
    neither names one, so ``prefect deploy`` creates no deployment without it.
    """
    value = (repo or "").strip() or os.environ.get(env, "").strip()
    if not value or "{{" in value:
        raise DeploymentConfigError(
            f"deployment {deployment} needs a repository and none is set: set {env} to the git "
            f"repository its runs work on, as a path or URL the workers can read, and deploy again "
            f"(e.g. {env}=/srv/repos/app prefect deploy --name {deployment})"
        )
    return {"repo": value}
