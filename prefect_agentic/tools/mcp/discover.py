"""``agentic tools --mcp``: the tools an MCP server offers, before a plan uses them.

An HTTP server is asked from the host. A stdio server is started the way a
step would start it: in a fresh sandbox container (network off), with a copy of
the repository's committed files as its workspace, so a server that lives in
the repository runs exactly as it will in a run.
"""

from __future__ import annotations

import shlex
import subprocess
import tempfile
import uuid
from collections.abc import Sequence
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
from prefect_agentic.workspace import run_git_bytes

CLIENT_PATH = ".agentic/mcp_client.py"


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
    with tempfile.TemporaryDirectory(prefix="agentic-mcp-") as scratch:
        workspace = Path(scratch)
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
    subprocess.run(["tar", "-x", "--no-same-owner", "-C", str(target)], input=archive, check=True)
