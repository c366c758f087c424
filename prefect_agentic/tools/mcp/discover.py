"""``agentic tools --mcp``: the tools an MCP server offers, before a plan uses them.

An HTTP server is asked from the host. A stdio server is started the way a
step would start it: in a fresh sandbox container (network off), with a copy of
the repository's committed files as its workspace, so a server that lives in
the repository runs exactly as it will in a run. That workspace has a run's
size limit too (``SandboxSettings.workspace_size``, enforced by a loop-mounted
image that is deleted afterwards): the server's commands write it as a step's
would, and must not fill the host's disk on the way.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import git

from prefect_agentic.blocks.sandbox_settings import SandboxSettings
from prefect_agentic.boundary import WorkspaceFiles
from prefect_agentic.sandbox.result import CommandResult
from prefect_agentic.sandbox.runner import WORKSPACE_MOUNT, open_sandbox
from prefect_agentic.tools.mcp.client import (
    McpError,
    McpToolInfo,
    client_script,
    http_list_tools,
    stdio_list_tools,
)
from prefect_agentic.workspace import mount_size_limited, run_git_bytes, unmounted_at_end

CLIENT_PATH = ".agentic/mcp_client.py"
logger = logging.getLogger("prefect_agentic.mcp")


def is_url(server: str) -> bool:
    return server.startswith(("http://", "https://"))


def list_server_tools(server: str, *, repo: Path, settings: SandboxSettings,
                      timeout: float) -> list[McpToolInfo]:
    """The tools of ``server``: an http(s) URL, or a stdio server's command line."""
    if is_url(server):
        return http_list_tools(server, timeout)
    command = shlex.split(server)
    if not command:
        raise McpError("the MCP server command is empty")
    with tempfile.TemporaryDirectory(prefix="agentic-mcp-") as scratch, \
            _size_limited(Path(scratch), settings.workspace_size) as workspace:
        _export_head(repo, workspace)
        files = WorkspaceFiles(workspace)
        files.write_text(CLIENT_PATH, client_script())
        files.chmod("", 0o755)
        owner = settings.workspace_owner()
        if owner is not None:
            files.chown_tree("", *owner)
        sandbox = open_sandbox(settings.model_copy(update={"mode": "per_step"}), workspace,
                               f"mcp-discover-{uuid.uuid4().hex[:12]}")
        try:
            def run(cmd: Sequence[str]) -> CommandResult:
                result = sandbox.run(cmd, timeout=timeout, env={})
                if result.timed_out:
                    raise McpError(f"the MCP server did not answer within {timeout:g}s")
                return result

            return stdio_list_tools(run, f"{WORKSPACE_MOUNT}/{CLIENT_PATH}", command, max(1.0, timeout - 2))
        finally:
            sandbox.close()


@contextmanager
def _size_limited(scratch: Path, limit: str | None) -> Iterator[Path]:
    """A workspace in ``scratch``, a filesystem of ``limit`` while the block runs (``scratch`` itself
    without a limit, when ``limit`` is empty: the opt-out).

    The run's own limit, not a smaller one: a smaller one would be a guess at what the
    repository's files and the server need, and a guess too small would fail the discovery of
    a server that works in a run. The image is sparse and goes with ``scratch``, so the host
    holds at most the limit, and only while the server is asked. Where the limit cannot be
    enforced, ``WorkspaceSizeLimitError``, as for a run.
    """
    if not limit:
        yield scratch
        return
    workspace = scratch / "workspace"
    with unmounted_at_end(workspace, logger):
        mount_size_limited(workspace, limit)
        yield workspace


def _export_head(repo: Path, target: Path) -> None:
    """The committed files of ``repo`` at HEAD into ``target`` (nothing when it is not a repository).

    Through ``run_git_bytes``, the host's one hardened way to run git: no hooks,
    user or system config, nor attribute filters of the repository apply.
    """
    try:
        run_git_bytes(repo, "rev-parse", "--verify", "-q", "HEAD")
    except (git.GitCommandError, git.NoSuchPathError):
        return
    archive = run_git_bytes(repo, "archive", "--format=tar", "HEAD")
    unpacked = subprocess.run(["tar", "-x", "--no-same-owner", "-C", str(target)], input=archive,
                              check=False, capture_output=True)
    if unpacked.returncode != 0:  # e.g. the files do not fit the workspace size limit
        raise McpError(f"the committed files of {repo} could not be copied into the server's workspace: "
                       f"{unpacked.stderr.decode(errors='replace').strip()[-300:]}")
