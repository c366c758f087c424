"""The approval form's text: the review under the decision, HTML blocks the Prefect UI keeps
(classes, no styles) for the command and the coloured diff, and the plain Markdown terminals get."""

from __future__ import annotations

from prefect_agentic.gates.answer import HEADING_END, answer_form, form_heading
from prefect_agentic.gates.review import _diff_line, _pre, plain_review

REVIEW = "\n\n".join([
    "### Approve step `push` of plan `release`?",
    "**Goal:** Tag & push",
    "**Step** `push` — tool `shell`",
    _pre("command", "git push origin main &amp;&amp; echo &lt;done&gt;"),
    "**Diff since the run started** (1 files, +1 -1)",
    _pre("diff", "\n".join(_diff_line(x) for x in ["--- a/x", "+++ b/x", "@@ -1 +1 @@", "-old <a>", "+new"])),
])


def test_the_diff_is_coloured_with_the_ui_classes_and_escaped() -> None:
    assert _diff_line("+new") == '<span class="text-green-500">+new</span>'
    assert _diff_line("-old <a>") == '<span class="text-red-500">-old &lt;a&gt;</span>'
    assert _diff_line("+++ b/x") == "+++ b/x" and _diff_line(" same") == " same"
    assert "style=" not in REVIEW  # the UI's sanitizer drops style attributes


def test_terminals_get_fenced_code_back() -> None:
    plain = plain_review(REVIEW)
    assert "```sh\ngit push origin main && echo <done>\n```" in plain
    assert "```diff\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old <a>\n+new\n```" in plain
    assert "<span" not in plain and "<pre" not in plain


def test_the_review_is_the_decision_help_and_the_heading_the_description() -> None:
    heading = form_heading(REVIEW)
    assert heading.startswith("### Approve step `push`") and "**Goal:** Tag & push" in heading
    assert heading.endswith(HEADING_END) and "**Step**" not in heading
    help_text = answer_form(REVIEW).model_json_schema()["properties"]["decision"]["description"]
    assert help_text.startswith("**Step** `push`") and "approve: run the step" in help_text
    assert "### Approve" not in help_text
