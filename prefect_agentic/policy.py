"""Enforcement of the tool policy: one place that every tool call and command passes.

``Tool.invoke`` asks ``check_tool_call`` before a tool runs and
``ToolContext.run`` asks ``check_command`` before a command reaches the
sandbox; the executor asks ``protected_path_changes`` after a step that writes
the workspace. ``static_problems`` rejects, at validation time, a plan that
could only succeed by breaking the policy. Every function is pure: callers
record the decision and raise ``PolicyDeniedError``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

from prefect_agentic.blocks.tool_policy import CommandRule, ToolPolicy
from prefect_agentic.plan.models import Plan, Step
from prefect_agentic.tools.base import Tool, ToolInput, command_line
from prefect_agentic.tools.registry import ToolRegistry
from prefect_agentic.workspace import ChangeSummary


@dataclass(frozen=True)
class PolicyDecision:
    """The outcome of one check: allowed, or denied by ``rule`` because of ``reason``."""

    subject: str
    allowed: bool
    rule: str | None = None
    reason: str = ""

    def as_record(self) -> dict[str, object]:
        return {"subject": self.subject, "allowed": self.allowed, "rule": self.rule,
                "reason": self.reason}


def operation_of(tool: type[Tool], args: ToolInput) -> str:
    """``tool:operation``, the name policies use for a call (``git:commit``, ``shell:run``)."""
    return f"{tool.name}:{tool.operation(args)}"


def check_tool_call(policy: ToolPolicy, tool: type[Tool], args: ToolInput) -> PolicyDecision:
    operation = operation_of(tool, args)
    if not any(fnmatch.fnmatchcase(tool.name, pattern) for pattern in policy.allowed_tools):
        return PolicyDecision(operation, False, "allowed_tools",
                              f"tool '{tool.name}' is not in allowed_tools {policy.allowed_tools}")
    for pattern in policy.denied_operations:
        if fnmatch.fnmatchcase(operation, pattern):
            return PolicyDecision(operation, False, f"denied_operations:{pattern}",
                                  f"operation '{operation}' is denied")
    url = tool.mcp_server_url(args)
    if url is not None and not any(fnmatch.fnmatchcase(url, p) for p in policy.mcp_servers):
        return PolicyDecision(operation, False, "mcp_servers",
                              f"MCP server {url} is not in the policy's mcp_servers {policy.mcp_servers}")
    return PolicyDecision(operation, True)


def check_command(policy: ToolPolicy, command: Sequence[str] | str, *, approved: bool) -> PolicyDecision:
    """Deny rules always win; approve rules pass only in a step a human approved."""
    line = command_line(command)
    for rule in _rules(policy, "deny"):
        if rule.matches(line):
            return PolicyDecision(line, False, rule.name, rule.reason)
    if not approved:
        for rule in _rules(policy, "approve"):
            if rule.matches(line):
                return PolicyDecision(
                    line, False, rule.name,
                    f"{rule.reason}; it needs approval: set requires_approval: true on the step",
                )
    return PolicyDecision(line, True)


def protected_path_changes(policy: ToolPolicy, changes: ChangeSummary) -> dict[str, list[str]]:
    """Protected patterns the change touched, with the paths that touched them."""
    touched = {pattern: changes.touches(pattern) for pattern in policy.protected_paths}
    return {pattern: paths for pattern, paths in touched.items() if paths}


def approval_rules(policy: ToolPolicy, step: Step, registry: ToolRegistry) -> list[str]:
    """The rules that make ``step`` need a human's approval, as far as its arguments tell."""
    tool = registry.get(step.tool)
    args = tool.parse_args(step.args)
    operation = operation_of(tool, args)
    rules = [f"operation {operation}" for pattern in policy.approval_operations
             if fnmatch.fnmatchcase(operation, pattern)][:1]
    preview = tool.command_preview(args)
    if preview is not None:
        rules += [rule.name for rule in _rules(policy, "approve") if rule.matches(preview)]
    return rules


def auto_approves(policy: ToolPolicy, step: Step, registry: ToolRegistry) -> bool:
    """Whether a run without a human may approve ``step`` (only if every rule involved allows it)."""
    rules = approval_rules(policy, step, registry)
    if not rules or step.requires_approval:
        return False
    tool = registry.get(step.tool)
    operation = operation_of(tool, tool.parse_args(step.args))
    return all(
        any(fnmatch.fnmatchcase(rule.removeprefix("operation "), p) or fnmatch.fnmatchcase(operation, p)
            for p in policy.auto_approve)
        for rule in rules
    )


def secret_granted(policy: ToolPolicy, step_id: str, secret: str) -> bool:
    return any(fnmatch.fnmatchcase(step_id, pattern) and secret in names
               for pattern, names in policy.secret_grants.items())


def static_problems(policy: ToolPolicy, plan: Plan, registry: ToolRegistry) -> list[str]:
    """Policy breaches visible before anything runs, one line each, naming step and rule."""
    from prefect_agentic.plan.validation import step_place

    problems = []
    for index, step in enumerate(plan.steps):
        place = step_place(index, step.id)
        problems += [f"{place}: {p}" for p in step_policy_problems(policy, step, registry)]
    return problems


def step_policy_problems(policy: ToolPolicy, step: Step, registry: ToolRegistry) -> list[str]:
    """The breaches of one step (valid tool and arguments), each starting with its field."""
    tool = registry.get(step.tool)
    args = tool.parse_args(step.args)
    problems = []
    decision = check_tool_call(policy, tool, args)
    if not decision.allowed:
        problems.append(f"denied by policy rule '{decision.rule}': {decision.reason}")
    preview = tool.command_preview(args)
    if preview is not None:
        command = check_command(policy, preview, approved=True)
        if not command.allowed:
            problems.append(f"args: denied by policy rule '{command.rule}': {command.reason}")
    if step.network is not None and step.network not in policy.allowed_networks:
        problems.append(f"network: '{step.network}' is not in the policy's allowed_networks "
                        f"{policy.allowed_networks}")
    for secret in step.secrets:
        if not secret_granted(policy, step.id, secret):
            problems.append(f"secrets: the policy grants this step no secret '{secret}' "
                            "(add it to the policy's secret_grants)")
    return problems


def _rules(policy: ToolPolicy, action: str) -> list[CommandRule]:
    return [rule for rule in policy.command_rules if rule.action == action]


__all__ = [
    "PolicyDecision", "ToolPolicy", "approval_rules", "auto_approves", "check_command",
    "check_tool_call", "operation_of", "protected_path_changes", "secret_granted",
    "static_problems", "step_policy_problems",
]
