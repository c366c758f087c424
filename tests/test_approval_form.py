"""The approval form's text: the review is the help text of the decision field, as one HTML
block the Prefect UI keeps (classes, no styles, no blank lines), with the command wrapped and
the diff coloured; terminals get the Markdown review."""

from __future__ import annotations

from prefect_agentic.gates.answer import answer_form
from prefect_agentic.gates.review import _diff_line, _inline


def test_diff_lines_are_coloured_with_the_ui_classes_and_escaped() -> None:
    assert _diff_line("+new") == '<span class="block text-green-500">+new</span>'
    assert _diff_line("-old <a>") == '<span class="block text-red-500">-old &lt;a&gt;</span>'
    assert _diff_line("+++ b/x") == '<span class="block">+++ b/x</span>'
    assert _diff_line(" same") == '<span class="block"> same</span>'


def test_review_markdown_lines_become_html_without_styles() -> None:
    line = _inline("**Goal:** fix `a<b>` — [full diff](http://127.0.0.1:4200/artifacts/artifact/1)")
    assert line == ('<p class="mt-2"><strong>Goal:</strong> fix <code class="p-code-container">a&lt;b&gt;</code>'
                    ' — <a href="http://127.0.0.1:4200/artifacts/artifact/1">full diff</a></p>')
    assert "style" not in line


def test_the_review_is_the_decision_help_text() -> None:
    review = '<div class="agentic-review"><p>Step</p></div>'
    schema = answer_form(review).model_json_schema()
    help_text = schema["properties"]["decision"]["description"]
    assert help_text.startswith(review) and "approve: run the step" in help_text
    assert "\n\n" not in help_text
    answer = answer_form(review)(decision="approve", approver="ada")
    assert answer.decision == "approve" and answer.problem() is None
