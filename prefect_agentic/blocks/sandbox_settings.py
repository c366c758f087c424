"""Where and how step commands run: the Docker sandbox settings block."""

from __future__ import annotations

import os
from typing import Literal

from prefect.blocks.core import Block
from prefect_docker.host import DockerHost
from pydantic import Field, field_validator

from prefect_agentic.blocks.branding import documentation_url, logo_url
from prefect_agentic.blocks.registration import RegisteredBySlug

DEFAULT_IMAGE = "prefect-agentic/sandbox:2"
GLOBAL_SANDBOX_LIMIT = "agentic-sandboxes"
SANDBOX_UID = 10001
"""The unprivileged uid commands run as (user ``agent`` in the sandbox image)."""


def run_limit_name(run_key: str) -> str:
    """Name of the per-run sandbox limit of run ``run_key``."""
    return f"{GLOBAL_SANDBOX_LIMIT}-run-{run_key}"[:120]


class SandboxSettings(RegisteredBySlug, Block):
    """Settings of the Docker containers that step commands run in.

    The Docker engine is reached through prefect-docker's ``DockerHost`` block,
    so a worker that already knows its engine needs no second configuration.
    """

    _block_type_name = "Agentic Sandbox Settings"
    _block_type_slug = "agentic-sandbox-settings"
    _logo_url = logo_url("agentic-sandbox-settings")  # type: ignore[assignment]
    _documentation_url = documentation_url("agentic-sandbox-settings")  # type: ignore[assignment]
    _description = (
        "Docker sandbox for prefect-agentic steps: image, resource limits, network, "
        "timeout, user, and whether each step gets a fresh container or a warm one is reused."
    )

    image: str = Field(
        default_factory=lambda: os.environ.get("AGENTIC_SANDBOX_IMAGE", DEFAULT_IMAGE),
        description=(
            "Image with the tools steps need (python3, git, pytest, ruff, coverage, pip, black, bandit)."
        ),
    )
    mode: Literal["per_step", "warm"] = Field(
        default="per_step",
        description=(
            "per_step: a fresh container for every command (strongest isolation). "
            "warm: one container per run, commands run in it with `docker exec` (faster)."
        ),
    )
    runtime: str = Field(
        default="runc",
        description=(
            "OCI runtime of the containers: runc (Docker's default) or runsc (gVisor: a user-space kernel "
            "between commands and the host kernel; register it with `scripts/setup.sh runsc`)."
        ),
    )
    memory: str = Field(default="1g", description="Memory limit per container (Docker syntax).")
    cpus: float = Field(default=1.0, gt=0, description="CPU limit per container.")
    pids: int = Field(default=512, gt=0, description="Maximum number of processes per container.")
    network: str = Field(
        default="none",
        description="Docker network for containers; 'none' (the default) disables networking.",
    )
    timeout_seconds: float = Field(
        default=600, gt=0, description="Step timeout used when a step sets none."
    )
    user: str | None = Field(
        default=None,
        description=(
            "uid:gid the command runs as. Empty: 10001:10001 when the calling process is root "
            "(the workspace is handed to that uid), else the caller's own uid:gid. "
            "Never 0 unless set on purpose."
        ),
    )
    read_only_root: bool = Field(
        default=True,
        description="Mount the image's root filesystem read-only; /tmp is a size-capped tmpfs.",
    )
    tmp_size: str = Field(default="256m", description="Size cap of the /tmp tmpfs.")
    workspace_size: str | None = Field(
        default="8g",
        description=(
            "Size limit of a run's workspace (worktree plus its snapshots), enforced by the system: the "
            "workspace is a sparse ext4 image of this size, loop-mounted (needs root). A step writing past "
            "it fails naming the limit; where it cannot be mounted, the run stops before any step. Empty: "
            "no limit, an explicit opt-out the run logs and records in its audit log."
        ),
    )
    drop_capabilities: bool = Field(
        default=True,
        description="Drop every Linux capability and forbid gaining privileges (no-new-privileges).",
    )
    output_limit_bytes: int = Field(
        default=1_000_000,
        ge=1024,
        description="Captured bytes per stream; beyond it the middle of the output is dropped.",
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment of every command. The host's environment is never passed in.",
    )
    wheelhouse: str | None = Field(
        default=None,
        description=(
            "Host directory of wheels mounted read-only at /wheelhouse, where `pip` steps install "
            "from (containers have no network). Empty: no such mount."
        ),
    )
    docker_host: DockerHost = Field(
        default_factory=lambda: DockerHost(max_pool_size=64),
        description="The Docker engine to use (prefect-docker block).",
    )
    concurrency_limit: str | None = Field(
        default=GLOBAL_SANDBOX_LIMIT,
        description=(
            "Prefect global concurrency limit that bounds the sandboxes of all runs on all "
            "workers: a step holds one slot while its tool runs. Created on demand with "
            "`max_concurrent_sandboxes` slots. Empty: no global bound."
        ),
    )
    max_concurrent_sandboxes: int = Field(
        default=8, ge=1,
        description="Size of the global limit when it is created (an existing limit keeps its size).",
    )
    max_sandboxes_per_run: int | None = Field(
        default=None, ge=1,
        description=(
            "Sandboxes one run may use at once, through its own global concurrency limit "
            "(agentic-sandboxes-run-<run key>, created for the run). Empty: only the run's "
            "step concurrency bounds it."
        ),
    )
    slot_lease_seconds: float = Field(
        default=60, ge=60,
        description=(
            "Lease of a concurrency slot (at least 60 s, the server's minimum): renewed while held; a "
            "holder that died frees its slot this long after its last renewal."
        ),
    )

    @field_validator("workspace_size")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        if value:
            from prefect_agentic.workspace import parse_size

            parse_size(value)
        return value or None

    def concurrency_limits(self, run_key: str) -> dict[str, int]:
        """The global concurrency limits a step of run ``run_key`` holds a slot of (name → size)."""
        limits = {}
        if self.concurrency_limit:
            limits[self.concurrency_limit] = self.max_concurrent_sandboxes
        if self.max_sandboxes_per_run:
            limits[run_limit_name(run_key)] = self.max_sandboxes_per_run
        return limits

    def effective_user(self) -> str:
        if self.user:
            return self.user
        if os.getuid() == 0:
            return f"{SANDBOX_UID}:{SANDBOX_UID}"
        return f"{os.getuid()}:{os.getgid()}"

    def workspace_owner(self) -> tuple[int, int] | None:
        """The uid:gid the workspace must belong to so commands can write it (None: leave it).

        Only a root caller can hand files to another uid; a non-root caller
        runs commands as itself, and its files are already its own.
        """
        if os.getuid() != 0:
            return None
        uid, _, gid = self.effective_user().partition(":")
        return int(uid), int(gid or uid)
