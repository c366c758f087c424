"""The review an approver reads before deciding: compact Markdown for the resume form.

It holds what a decision needs in seconds: the goal, the step and its exact
command or operation, what the run changed so far (the diff from the base
commit to the step's input snapshot, cut to a few lines, the full diff in a
Prefect artifact), the test and lint results so far, and a risk summary.
"""

from __future__ import annotations

import html
import json
import re
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
    versions: str = ""
    """Set when the run no longer runs what it pinned (an ``upgrade`` switch): which versions changed."""

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
            *([f"**Versions changed since the run started:** {self.versions}"] if self.versions else []),
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


    def form_html(self, *, diff_lines: int, diff_link: str | None) -> str:
        """The same review as one HTML block, for the help text of the form's decision field.

        The Prefect UI shows a form's own description in a box that shrinks to what the
        fields leave of the window (about 190 px at 1440×900); a field's help text is laid out
        with the fields, in the one scrolling form, so the review goes there. That help text
        loses its blank lines, which Markdown blocks need, so it is HTML: one block without
        blank lines, sanitized by the UI, which keeps ``class`` (not ``style``). The UI's own
        utility classes wrap the command instead of cutting it off, and colour the diff.
        """
        step = self.step
        parts = [
            _inline(f"### Approve step `{step.id}` of plan `{self.plan.id}`?").replace(
                'class="mt-2"', 'class="mt-2 text-lg font-semibold"', 1),
            _inline(f"**Goal:** {self.plan.goal}"),
            _inline(f"**Step** `{step.id}` — tool `{step.tool}`, operation `{self.operation}`"
                    + (f": {step.description}" if step.description else "")),
            _pre("".join(_line(html.escape(line)) for line in self.command.splitlines())),
            *([_inline(f"**Versions changed since the run started:** {self.versions}")] if self.versions else []),
            _inline("**Risk**") + '<ul class="list-disc pl-4">'
            + "".join(_inline(line.removeprefix("- "), tag="li") for line in self.risk().splitlines()) + "</ul>",
            _inline("**Tests and lint so far:** " + ("; ".join(self.checks) if self.checks else "none ran yet")),
        ]
        if self.diff.strip():
            lines = self.diff.splitlines()
            shown = lines[:diff_lines]
            where = f" — [full diff]({diff_link})" if diff_link else ""
            note = f" (first {len(shown)} of {len(lines)} lines{where})" if len(shown) < len(lines) else where
            parts += [_inline(f"**Diff since the run started** ({self.changes.stat_line()}){note}"),
                      _pre("".join(_diff_line(line) for line in shown), kind="diff")]
        else:
            parts.append(_inline("**Diff since the run started:** no changes yet"))
        return '<div class="agentic-review">' + "".join(parts) + "</div>"


_PRE_CLASSES = "p-code-container p-code-container--block whitespace-pre-wrap break-words my-2"
_DIFF_CLASSES = (("+++", ""), ("---", ""), ("+", "text-green-500"), ("-", "text-red-500"),
                 ("@@", "text-cyan-500"))


def _pre(body: str, kind: str = "command") -> str:
    return f'<pre class="agentic-{kind} {_PRE_CLASSES}"><code>{body}</code></pre>'


def _line(text: str, css: str = "") -> str:
    """One line of a block, as its own element: the UI turns the help text's newlines into
    spaces, so lines are kept apart by markup, not by newline characters."""
    return f'<span class="block {css}">{text}</span>'.replace(' ">', '">')


def _diff_line(line: str) -> str:
    css = next((css for prefix, css in _DIFF_CLASSES if line.startswith(prefix)), "")
    return _line(html.escape(line), css)


def _inline(markdown: str, tag: str = "p") -> str:
    """One line of the review's Markdown (bold, code, links) as an HTML element."""
    text = html.escape(markdown.removeprefix("### "), quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"`([^`]+)`", r'<code class="p-code-container">\1</code>', text)
    text = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', text)
    return f'<{tag} class="mt-2">{text}</{tag}>'


def review_of(plan: Plan, step: Step, policy: ToolPolicy, done: Mapping[str, StepReport],
              changes: ChangeSummary, diff: str, versions: str = "") -> GateReview:
    """The review of ``step`` given the run's reports so far and its changes since the base
    (``versions``: what the run switched to since it started, if anything)."""
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
        checks=[c for c in (_check(r) for r in done.values()) if c], versions=versions,
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
    if out.get("decision") and isinstance(out.get("steps"), list):  # a canary's analysis (service_canary)
        steps = ", ".join(f"{s['share']} %: {s['requests']} requests, error rate {s['error_rate']:.3f}, "
                          f"latency {s['latency_ms']} ms ({s['result']})" for s in out["steps"])
        return f"{mark} `{report.step_id}` canary {out['decision']} ({steps})"
    return None
