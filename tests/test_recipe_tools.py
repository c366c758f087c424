"""The parts of the pip, ghostwrite and bandit tools that need no sandbox: pins, findings, test picks."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from prefect_agentic.boundary import WorkspaceFiles
from prefect_agentic.errors import ToolError
from prefect_agentic.tools.bandit import parse_bandit_report
from prefect_agentic.tools.ghostwriter import DERANDOMIZE, derandomized, untested_functions
from prefect_agentic.tools.pip import PipInput, install_failure, pin_requirement, requirement_args
from prefect_agentic.tools.scan import Finding, new_since, scan_output


def test_pinning_a_requirements_file_keeps_extras_markers_and_comments() -> None:
    text = textwrap.dedent("""\
        # pinned
        Cent_Lib[fast]>=1.0,<2 ; python_version >= "3.8"  # money
        centlibx==1.0
        -r other.txt
        """)
    pinned, old = pin_requirement(text, "cent-lib", "2.0.0", quoted=False)
    assert pinned.splitlines() == [
        "# pinned",
        'Cent_Lib[fast]==2.0.0; python_version >= "3.8"  # money',
        "centlibx==1.0",
        "-r other.txt",
    ]
    assert old == ['Cent_Lib[fast]>=1.0,<2 ; python_version >= "3.8"']


def test_pinning_pyproject_changes_only_the_requirement_strings() -> None:
    text = 'name = "shop"\ndependencies = ["centlib==1.0.0", "other>=2"]\n'
    pinned, old = pin_requirement(text, "centlib", "2.0.0", quoted=True)
    assert pinned == 'name = "shop"\ndependencies = ["centlib==2.0.0", "other>=2"]\n'
    assert old == ["centlib==1.0.0"]


def test_pip_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="op 'pin' needs a package and a version"):
        PipInput(op="pin", package="centlib")
    with pytest.raises(ValueError, match="'two' is not a version"):
        PipInput(op="pin", package="centlib", version="two")
    with pytest.raises(ValueError, match="workspace-relative path"):
        PipInput(op="install", files=["../requirements.txt"])


def test_a_pyproject_contributes_its_dependencies_to_pip(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\ndependencies = ["centlib==2.0.0"]\n')
    (tmp_path / "requirements.txt").write_text("centlib==2.0.0\n")
    assert requirement_args(WorkspaceFiles(tmp_path), ["requirements.txt", "pyproject.toml"]) == \
        ["-r", "requirements.txt", "centlib==2.0.0"]
    with pytest.raises(ToolError, match="requirement file 'dev.txt' is not in the workspace"):
        requirement_args(WorkspaceFiles(tmp_path), ["dev.txt"])


def finding(rule: str, line: int, severity: str = "high") -> Finding:
    return Finding(scanner="bandit", rule=rule, severity=severity, confidence="high",  # type: ignore[arg-type]
                   path="ops/disk.py", line=line, message=f"{rule} message")


def test_a_finding_that_only_moved_is_not_new_but_a_second_one_is() -> None:
    base = [finding("B602", 10)]
    assert new_since([finding("B602", 14)], base) == []
    assert new_since([finding("B602", 14), finding("B602", 30)], base) == [finding("B602", 30)]
    output = scan_output([finding("B602", 14), finding("B404", 1, "low")], base)
    assert output["new_findings"] == 1 and output["by_severity"] == {"high": 1, "low": 1}
    assert output["log"] == "new: low B404 ops/disk.py:1 B404 message\nold: high B602 ops/disk.py:14 B602 message"
    assert output["headline"] == "2 findings (1 high, 1 low), 1 new since the base"


def test_a_file_bandit_could_not_parse_is_an_error_not_a_pass(tmp_path: Path) -> None:
    report = tmp_path / "bandit.json"
    report.write_text(json.dumps({"errors": [{"filename": "./x.py", "reason": "syntax error"}], "results": []}))
    with pytest.raises(ToolError, match=r"bandit could not scan every file: ./x.py: syntax error"):
        parse_bandit_report(report.read_bytes())


def test_untested_public_functions_are_those_with_no_executed_line(tmp_path: Path) -> None:
    (tmp_path / "geo").mkdir()
    (tmp_path / "geo" / "__init__.py").write_text("def top():\n    return 1\n")
    (tmp_path / "geo" / "shapes.py").write_text(textwrap.dedent("""\
        def area(w, h):
            return w * h

        def clamp(x):
            return x

        def _private():
            return 0
        """))
    executed = {"geo/shapes.py": {1, 2, 4}}  # area's body ran; clamp's only its def line
    assert untested_functions(WorkspaceFiles(tmp_path), ["geo"], executed) == ["geo.shapes.clamp", "geo.top"]


def test_generated_tests_are_derandomized_and_write_no_database() -> None:
    source = "from hypothesis import given, strategies as st\n\n\n@given(x=st.integers())\ndef test_fuzz_f(x):\n    f(x)\n"
    lines = derandomized(source).splitlines()
    assert lines[0].startswith("# Derandomized by prefect-agentic")
    assert "from hypothesis import given, strategies as st, settings" in lines
    assert lines[lines.index("@given(x=st.integers())") - 1] == DERANDOMIZE


def test_an_install_without_a_wheelhouse_says_how_to_give_one() -> None:
    log = ("WARNING: Location '/wheelhouse' is ignored: it is either a non-existing path or lacks a "
           "specific scheme.\nERROR: No matching distribution found for centlib==2.0.0")
    assert install_failure(["requirements.txt"], "/wheelhouse", 97, log).startswith(
        "installing ['requirements.txt'] from /wheelhouse failed (exit code 97); there is no wheelhouse "
        "at /wheelhouse in the sandbox (set SandboxSettings.wheelhouse to a host directory of wheels):")
