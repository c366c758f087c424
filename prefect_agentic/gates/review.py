"""The review an approver reads before deciding: compact Markdown for the resume form.

It holds what a decision needs in seconds: the goal, the step and its exact
command or operation, what the run changed so far (the diff from the base
commit to the step's input snapshot, cut to a few lines, the full diff in a
Prefect artifact), the test and lint results so far, and a risk summary.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from prefect_agentic.blocks.tool_policy import ToolPolicy
from prefect_agentic.plan.models import Plan, Step
from prefect_agentic.policy import approval_rules, operation_of
from prefect_agentic.report import StepReport
from prefect_agentic.tools.registry import default_registry
from prefect_agentic.workspace import ChangeSummary


@dataclass(frozen=True)
class GateReview:
    """Everything the form shows about one gated step."""

    plan: Plan
    step: Step
    operation: str
    command: str
    rules: list[str]
    rule_reasons: dict[str, str]
    changes: ChangeSummary
    diff: str
    checks: list[str]

    def risk(self) -> str:
        added = sum(f.added for f in self.changes.files)
        deleted = sum(f.deleted for f in self.changes.files)
        destructive = ", ".join(f"`{r}` ({self.rule_reasons[r]})" if self.rule_reasons.get(r) else f"`{r}`"
                                for r in self.rules) or "none known from the arguments"
        involved = ([f"`{r}`" for r in self.rules]
                    + (["`requires_approval` (set on the step)"] if self.step.requires_approval else []))
        return (f"- files touched so far: **{len(self.changes.files)}**, lines changed: "
                f"**{added + deleted}** (+{added} −{deleted})\n"
                f"- destructive operations: {destructive}\n"
                f"- policy rules involved: {', '.join(involved)}\n"
                f"- writes the workspace: {'yes' if self.step.writes_workspace else 'no'}")

    def risk_line(self) -> str:
        rules = ", ".join(self.rules + (["requires_approval"] if self.step.requires_approval else []))
        return (f"{len(self.changes.files)} files, {self.changes.lines_changed} lines changed so far; "
                f"rules: {rules}")

    def markdown(self, *, diff_lines: int, diff_link: str | None) -> str:
        """The form's description; the diff is cut to ``diff_lines`` lines, linking the full one."""
        step = self.step
        parts = [
            f"### Approve step `{step.id}` of plan `{self.plan.id}`?",
            f"**Goal:** {self.plan.goal}",
            f"**Step** `{step.id}` — tool `{step.tool}`, operation `{self.operation}`"
            + (f": {step.description}" if step.description else ""),
            f"```sh\n{self.command}\n```",
            "**Risk**\n" + self.risk(),
            "**Tests and lint so far:** " + ("; ".join(self.checks) if self.checks else "none ran yet"),
            self._diff_section(diff_lines, diff_link),
            ("Answer **approve**, **reject** (with a reason) or **request_changes** (with a reason or "
             "edited instructions), and give your name. No answer in time counts as a rejection."),
        ]
        return "\n\n".join(parts)

    def _diff_section(self, diff_lines: int, diff_link: str | None) -> str:
        if not self.diff.strip():
            return "**Diff since the run started:** no changes yet"
        lines = self.diff.splitlines()
        shown = lines[:diff_lines]
        cut = len(lines) - len(shown)
        where = f" — [full diff]({diff_link})" if diff_link else ""
        note = f" (first {len(shown)} of {len(lines)} lines{where})" if cut else where
        return (f"**Diff since the run started** ({self.changes.stat_line()}){note}\n"
                f"```diff\n" + "\n".join(shown) + "\n```")


def review_of(plan: Plan, step: Step, policy: ToolPolicy, done: Mapping[str, StepReport],
              changes: ChangeSummary, diff: str) -> GateReview:
    """The review of ``step`` given the run's reports so far and its changes since the base."""
    registry = default_registry()
    tool = registry.get(step.tool)
    args = tool.parse_args(step.args)
    preview = tool.command_preview(args)
    rules = approval_rules(policy, step, registry)
    reasons = {rule.name: rule.reason for rule in policy.command_rules}
    return GateReview(
        plan=plan, step=step, operation=operation_of(tool, args),
        command=preview if preview is not None else f"{step.tool} {json.dumps(step.args, sort_keys=True)}",
        rules=rules, rule_reasons=reasons, changes=changes, diff=diff,
        checks=[c for c in (_check(r) for r in done.values()) if c],
    )


def _check(report: StepReport) -> str | None:
    """One test, lint or integration result (``tests`` pytest: 4 passed, 0 failed), None for other steps."""
    out = report.output or {}
    mark = "✔" if report.ok else "✘"
    if "tests_failed" in out:
        return f"{mark} `{report.step_id}` {out.get('passed', 0)} passed, {out.get('failed', 0)} failed"
    if out.get("lint_violations") is not None:
        return f"{mark} `{report.step_id}` {out['lint_violations']} lint violations"
    if isinstance(out.get("checks"), dict) and "passed" in out:  # integration checks (service_integration)
        return f"{mark} `{report.step_id}` {out['passed']} checks passed, {out.get('failed', 0)} failed"
    return None
