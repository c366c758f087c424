"""Every success criterion, judged deterministically into ok / retry / fail."""

from __future__ import annotations

import pytest

from prefect_agentic.evaluator import VerdictKind, evaluate
from prefect_agentic.plan.criteria import SuccessCriteria
from prefect_agentic.tools.coverage import CoverageOutput
from prefect_agentic.tools.pytest import PytestOutput
from prefect_agentic.tools.ruff import RuffOutput
from prefect_agentic.tools.scan import ScanOutput
from prefect_agentic.tools.shell import ShellOutput
from prefect_agentic.workspace import ChangeSummary, FileChange


def shell(exit_code: int) -> ShellOutput:
    return ShellOutput(exit_code=exit_code, stdout="", stderr="")


def pytest_result(failed: int = 0, errors: int = 0) -> PytestOutput:
    return PytestOutput(exit_code=1 if failed + errors else 0, passed=3, failed=failed,
                        errors=errors, skipped=0, tests_failed=failed + errors)


def change(*files: tuple[str, int, int]) -> ChangeSummary:
    return ChangeSummary(files=[FileChange(path=p, added=a, deleted=d) for p, a, d in files])


NO_CHANGE = ChangeSummary()


def test_no_criteria_is_ok() -> None:
    assert evaluate(SuccessCriteria(), shell(7), NO_CHANGE).kind is VerdictKind.OK


@pytest.mark.parametrize(("code", "kind"), [(0, VerdictKind.OK), (1, VerdictKind.RETRY)])
def test_exit_code(code: int, kind: VerdictKind) -> None:
    verdict = evaluate(SuccessCriteria(exit_code=0), shell(code), NO_CHANGE)
    assert verdict.kind is kind
    if kind is VerdictKind.RETRY:
        assert verdict.reasons == ["exit code 1, expected 0"]
        assert verdict.criteria == ["exit_code"]


def test_exit_code_can_expect_non_zero() -> None:
    assert evaluate(SuccessCriteria(exit_code=3), shell(3), NO_CHANGE).ok


@pytest.mark.parametrize(("failed", "errors", "limit", "kind"), [
    (0, 0, 0, VerdictKind.OK),
    (1, 0, 0, VerdictKind.RETRY),
    (0, 1, 0, VerdictKind.RETRY),  # an erroring test counts as failed
    (2, 0, 2, VerdictKind.OK),
])
def test_tests_failed(failed: int, errors: int, limit: int, kind: VerdictKind) -> None:
    verdict = evaluate(SuccessCriteria(tests_failed=limit), pytest_result(failed, errors), NO_CHANGE)
    assert verdict.kind is kind


@pytest.mark.parametrize(("violations", "kind"), [(0, VerdictKind.OK), (4, VerdictKind.RETRY)])
def test_lint_violations(violations: int, kind: VerdictKind) -> None:
    output = RuffOutput(exit_code=0, lint_violations=violations)
    verdict = evaluate(SuccessCriteria(lint_violations=0), output, NO_CHANGE)
    assert verdict.kind is kind
    if violations:
        assert verdict.reasons == ["lint violations: 4, allowed at most 0"]


def test_a_criterion_the_call_did_not_report_fails() -> None:
    output = RuffOutput(exit_code=0)  # ruff format reports no violation count
    verdict = evaluate(SuccessCriteria(lint_violations=0), output, NO_CHANGE)
    assert verdict.kind is VerdictKind.FAIL
    assert verdict.reasons == ["the tool reported no lint_violations for this call"]


@pytest.mark.parametrize(("lines", "kind"), [(10, VerdictKind.OK), (11, VerdictKind.FAIL)])
def test_max_changed_lines(lines: int, kind: VerdictKind) -> None:
    diff = change(("a.py", lines - 4, 4))
    assert evaluate(SuccessCriteria(max_changed_lines=10), shell(0), diff).kind is kind


@pytest.mark.parametrize(("pattern", "path", "kind"), [
    ("tests/", "tests/test_a.py", VerdictKind.FAIL),
    ("tests/", "src/tests.py", VerdictKind.OK),
    ("*.toml", "pyproject.toml", VerdictKind.FAIL),
    ("*.toml", "sub/dir/x.toml", VerdictKind.FAIL),  # '*' also matches '/'
    ("setup.cfg", "setup.cfg.bak", VerdictKind.OK),
])
def test_unchanged_paths(pattern: str, path: str, kind: VerdictKind) -> None:
    verdict = evaluate(SuccessCriteria(unchanged_paths=[pattern]), shell(0), change((path, 1, 0)))
    assert verdict.kind is kind


def test_a_broken_guard_wins_over_a_retry_and_all_reasons_are_kept() -> None:
    verdict = evaluate(SuccessCriteria(exit_code=0, unchanged_paths=["tests/"]), shell(1),
                       change(("tests/t.py", 1, 1)))
    assert verdict.kind is VerdictKind.FAIL
    assert verdict.criteria == ["unchanged_paths"]
    assert verdict.reasons == ["changed protected path(s) ['tests/t.py'] (rule 'tests/')",
                               "exit code 1, expected 0"]


def test_step_criteria_override_tool_defaults() -> None:
    merged = SuccessCriteria(exit_code=2).merged_over({"exit_code": 0})
    assert merged.exit_code == 2
    assert SuccessCriteria().merged_over({"exit_code": 0}).exit_code == 0


def scan(new: int) -> ScanOutput:
    return ScanOutput(exit_code=0, new_findings=new)


@pytest.mark.parametrize(("new", "limit", "kind"), [
    (0, 0, VerdictKind.OK),
    (1, 0, VerdictKind.RETRY),
    (2, 2, VerdictKind.OK),
])
def test_new_findings(new: int, limit: int, kind: VerdictKind) -> None:
    verdict = evaluate(SuccessCriteria(new_findings=limit), scan(new), NO_CHANGE)
    assert verdict.kind is kind
    if kind is VerdictKind.RETRY:
        assert verdict.reasons == [f"new findings: {new}, allowed at most {limit}"]
        assert verdict.criteria == ["new_findings"]


def coverage(gain: float | None, failed: int = 0) -> CoverageOutput:
    return CoverageOutput(exit_code=0, passed=3, failed=failed, errors=0, skipped=0, tests_failed=failed,
                          coverage_percent=50.0, covered_lines=5, statements=10, coverage_gain=gain)


@pytest.mark.parametrize(("gain", "kind"), [
    (12.5, VerdictKind.OK),
    (0.1, VerdictKind.OK),    # the minimum itself is enough
    (0.0, VerdictKind.RETRY),  # unchanged coverage is not a rise
    (-3.0, VerdictKind.RETRY),
])
def test_min_coverage_gain(gain: float, kind: VerdictKind) -> None:
    verdict = evaluate(SuccessCriteria(min_coverage_gain=0.1), coverage(gain), NO_CHANGE)
    assert verdict.kind is kind
    if kind is VerdictKind.RETRY:
        assert verdict.reasons == [f"coverage gain: {gain:+g} points, required at least +0.1"]


def test_coverage_must_rise_and_the_suite_stay_green() -> None:
    verdict = evaluate(SuccessCriteria(tests_failed=0, min_coverage_gain=1), coverage(0.0, failed=1), NO_CHANGE)
    assert verdict.criteria == ["tests_failed", "min_coverage_gain"]


def test_a_coverage_gain_without_a_base_measure_fails() -> None:
    verdict = evaluate(SuccessCriteria(min_coverage_gain=1), coverage(None), NO_CHANGE)
    assert verdict.kind is VerdictKind.FAIL
    assert verdict.reasons == ["the tool reported no coverage_gain for this call"]


def test_a_coverage_gain_must_be_positive() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        SuccessCriteria(min_coverage_gain=0)
