"""The ``pytest`` tool: runs tests in the sandbox and reads the JUnit XML report."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field

from prefect_agentic.errors import ToolError, ToolOutputError
from prefect_agentic.sandbox.runner import WHEELHOUSE_MOUNT
from prefect_agentic.tools.base import Tool, ToolContext, ToolInput, ToolOutput
from prefect_agentic.tools.pip import INSTALL_FAILED_EXIT, VENV, install_failure, install_script

CRASH_EXIT_CODES = {2: "interrupted", 3: "internal error", 4: "usage error"}


class PytestInput(ToolInput):
    paths: list[str] = Field(default_factory=list, description="Test paths; empty = pytest's default.")
    keyword: str | None = Field(default=None, description="Only tests matching this -k expression.")
    markers: str | None = Field(default=None, description="Only tests matching this -m expression.")
    extra_args: list[str] = Field(default_factory=list, description="Further pytest arguments.")
    allow_no_tests: bool = Field(
        default=False, description="Treat 'no tests collected' as an empty result, not an error."
    )
    requirements: list[str] = Field(
        default_factory=list,
        description="Requirement files to install first, offline from `wheelhouse`, into a fresh "
        "environment the tests then run in (see the `pip` tool).",
    )
    wheelhouse: str = Field(default=WHEELHOUSE_MOUNT, description="Directory of wheels in the sandbox.")


class PytestOutput(ToolOutput):
    passed: int = Field(ge=0)
    failed: int = Field(ge=0)
    errors: int = Field(ge=0)
    skipped: int = Field(ge=0)
    tests_failed: int = Field(ge=0, description="failed + errors")
    failing_tests: list[str] = Field(default_factory=list, description="Node ids of failing tests.")
    duration_s: float = 0.0


class PytestTool(Tool):
    """Run pytest in the sandbox; a failing test is a result, a crash is an error."""

    name: ClassVar[str] = "pytest"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = "Run tests with pytest; report passed/failed/errors/skipped."
    Input: ClassVar[type[ToolInput]] = PytestInput
    Output: ClassVar[type[ToolOutput]] = PytestOutput

    @classmethod
    def operation(cls, args: ToolInput) -> str:
        return "test"

    def run(self, args: PytestInput, ctx: ToolContext) -> Mapping[str, Any]:
        ctx.reports.unlink("junit.xml")
        command = [
            "python3", "-m", "pytest", "-p", "no:cacheprovider", "-q",
            "-o", "junit_family=xunit1",
            f"--junitxml={ctx.report_dir_in_sandbox}/junit.xml",
        ]
        command += ["-k", args.keyword] if args.keyword else []
        command += ["-m", args.markers] if args.markers else []
        command += [*args.extra_args, *args.paths]
        if args.requirements:
            install = install_script(ctx.files, args.requirements, args.wheelhouse)
            script = f'{install} && exec {VENV}/bin/python "$@"'
            command = ["sh", "-c", script, "sh", *command[1:]]
        result = ctx.run(command)
        log = result.combined_tail()
        if args.requirements and result.exit_code == INSTALL_FAILED_EXIT:
            raise ToolError(install_failure(args.requirements, args.wheelhouse, result.exit_code, log))
        if result.exit_code in CRASH_EXIT_CODES:
            raise ToolError(
                f"pytest stopped ({CRASH_EXIT_CODES[result.exit_code]}, exit code "
                f"{result.exit_code}):\n{log}"
            )
        if result.exit_code == 5 and not args.allow_no_tests:
            raise ToolError(f"pytest collected no tests from {args.paths or ['.']}:\n{log}")
        if result.exit_code == 5:
            return _counts([], exit_code=5, log=log)
        report = ctx.reports.read_optional("junit.xml")
        if report is None:
            raise ToolError(f"pytest exited {result.exit_code} without writing its report:\n{log}")
        return {**parse_junit_xml(report), "exit_code": result.exit_code, "log": log}


def parse_junit_xml(report: bytes, name: str = "junit.xml") -> dict[str, Any]:
    """Counts and failing node ids from a pytest JUnit XML report (xunit1 family).

    ``report`` is the report's bytes, read through the workspace boundary.
    """
    try:
        root = ET.fromstring(report)
    except ET.ParseError as exc:
        raise ToolOutputError(f"pytest report {name} is not valid XML: {exc}") from None
    cases = list(root.iter("testcase"))
    try:
        duration = sum(float(s.get("time", 0) or 0) for s in root.iter("testsuite"))
    except ValueError as exc:
        raise ToolOutputError(f"pytest report {name} is not JUnit XML: a testsuite's time is not a "
                              f"number ({exc})") from None
    result = _counts(cases)
    result["duration_s"] = round(duration, 3)
    return result


def _counts(cases: list[ET.Element], **extra: Any) -> dict[str, Any]:
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failing = []
    for case in cases:
        kinds = {child.tag for child in case}
        if "error" in kinds:
            counts["errors"] += 1
            failing.append(node_id(case))
        elif "failure" in kinds:
            counts["failed"] += 1
            failing.append(node_id(case))
        elif "skipped" in kinds:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return {
        **counts,
        "tests_failed": counts["failed"] + counts["errors"],
        "failing_tests": failing,
        **extra,
    }


def node_id(case: ET.Element) -> str:
    """``tests/test_x.py::TestA::test_b`` from a testcase's file, classname and name."""
    name = case.get("name", "?")
    classname = case.get("classname", "")
    file = case.get("file")
    if not file:
        return f"{classname}::{name}" if classname else name
    module = file[:-3].replace("/", ".") if file.endswith(".py") else file
    classes = classname[len(module) + 1 :].split(".") if classname.startswith(module + ".") else []
    return "::".join([file, *[c for c in classes if c], name])
