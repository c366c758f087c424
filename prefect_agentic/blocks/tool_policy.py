"""What steps may do: the tool policy block.

The policy names the tools and operations that may run, command patterns that
are denied or need a human's approval, paths no step may change, the Docker
networks a step may ask for, and which secrets each step may receive. The
defaults are safe for pointing prefect-agentic at a real repository; loosen
them deliberately by saving a block with other values.

Enforcement lives in ``prefect_agentic.policy``; this module only says what
the rules are.
"""

from __future__ import annotations

import re
from typing import Literal

from prefect.blocks.core import Block
from pydantic import BaseModel, ConfigDict, Field, field_validator

from prefect_agentic.blocks.branding import documentation_url, logo_url
from prefect_agentic.blocks.registration import RegisteredBySlug


class CommandRule(BaseModel):
    """A regular expression searched in every command a step runs."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Rule name, quoted in denials and approvals.")
    pattern: str = Field(description="Python regular expression, searched in the command line.")
    action: Literal["deny", "approve"] = Field(
        description="deny: the command never runs. approve: it runs only after a human approved the step."
    )
    reason: str = Field(default="", description="Why the rule exists (shown with the decision).")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    def matches(self, command_line: str) -> bool:
        return re.search(self.pattern, command_line) is not None


DEFAULT_COMMAND_RULES: tuple[CommandRule, ...] = (
    CommandRule(name="force-push", action="deny",
                pattern=r"\bgit\b[^;&|]*\bpush\b[^;&|]*(\s--force(-with-lease)?\b|\s-f\b|\s\+\S)",
                reason="rewrites published history"),
    CommandRule(name="rm-rf-root", action="deny",
                pattern=r"\brm\s+(-\S+\s+)*-\w*[rR]\w*\s+(-\S+\s+)*(/\*?|~/?|\$HOME/?)(\s|$|[;&|])",
                reason="recursive delete of the root or home directory"),
    CommandRule(name="pipe-to-shell", action="deny",
                pattern=r"\b(curl|wget)\b[^;&|]*\|\s*(sudo\s+)?(ba|da|z|k)?sh\b",
                reason="runs a downloaded script unseen"),
    CommandRule(name="git-hooks", action="deny", pattern=r"\.git/hooks\b",
                reason="git hooks run code outside the sandbox on the next git command"),
    CommandRule(name="push", action="approve", pattern=r"\bgit\b[^;&|]*\bpush\b",
                reason="publishes commits"),
    CommandRule(name="merge", action="approve", pattern=r"\b(gh\s+pr\s+merge|git\s+merge)\b",
                reason="merges a change"),
    CommandRule(name="publish", action="approve",
                pattern=r"\b(twine\s+upload|(npm|poetry|cargo)\s+publish|docker\s+push)\b",
                reason="publishes a package or image"),
    CommandRule(name="deploy", action="approve",
                pattern=r"\b(kubectl\s+(apply|delete|rollout)|helm\s+(install|upgrade|uninstall)"
                        r"|terraform\s+(apply|destroy))\b",
                reason="changes a running system"),
    CommandRule(name="destructive-sql", action="approve", pattern=r"(?i)\b(drop|truncate)\s+(table|database)\b",
                reason="destroys data"),
)

DEFAULT_APPROVAL_OPERATIONS = ("*:push", "*:merge", "*:deploy", "*:shift-traffic", "*:publish")


class ToolPolicy(RegisteredBySlug, Block):
    """Which tools, operations, commands, paths, networks and secrets steps may use."""

    _block_type_name = "Agentic Tool Policy"
    _block_type_slug = "agentic-tool-policy"
    _logo_url = logo_url("agentic-tool-policy")  # type: ignore[assignment]
    _documentation_url = documentation_url("agentic-tool-policy")  # type: ignore[assignment]
    _description = (
        "Rules checked before every tool call and command of a prefect-agentic step: allowed "
        "tools and operations, denied and approval-required command patterns, protected paths, "
        "networks and secret grants."
    )

    allowed_tools: list[str] = Field(
        default_factory=lambda: ["*"], description="Tool names (globs) that may run."
    )
    denied_operations: list[str] = Field(
        default_factory=list,
        description="Operations (`tool:operation` globs, e.g. `git:commit`) that never run.",
    )
    command_rules: list[CommandRule] = Field(
        default_factory=lambda: list(DEFAULT_COMMAND_RULES),
        description="Patterns searched in every command: deny it, or require approval for it.",
    )
    approval_operations: list[str] = Field(
        default_factory=lambda: list(DEFAULT_APPROVAL_OPERATIONS),
        description="Operations (`tool:operation` globs) that always need a human's approval.",
    )
    auto_approve: list[str] = Field(
        default_factory=list,
        description=(
            "Approval rules or operations that non-interactive runs may approve without a human "
            "(rule names such as `push`, or operation globs such as `git:push`). Empty: never."
        ),
    )
    protected_paths: list[str] = Field(
        default_factory=lambda: [".github/workflows/", ".gitlab-ci.yml", ".agentic-policy*"],
        description="Paths no step may change (globs; `dir/` protects a directory).",
    )
    allowed_networks: list[str] = Field(
        default_factory=list,
        description="Docker networks a step may ask for (`network:` in the plan); none by default.",
    )
    mcp_servers: list[str] = Field(
        default_factory=list,
        description=(
            "URLs (globs, e.g. `https://mcp.example.com/*`) of HTTP MCP servers the `mcp` tool may "
            "call from the host; none by default. Stdio MCP servers run inside the sandbox instead."
        ),
    )
    secret_grants: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Step ids (globs) to the secrets (Prefect Secret block names) they may receive.",
    )
