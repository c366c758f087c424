"""The documentation is tested: the site builds with `mkdocs build --strict`, every code
block in docs/ carries a docs-test marker, every marked block is run, compared, written
or parsed (tests/docs_runner.py; the markers are described in docs/contributors.md), and
the generated events reference names every event the code emits."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any, get_args

import pytest
from docs_runner import (
    DOCS,
    ROOT,
    DocsTestError,
    blocks_of,
    matches,
    normalize,
    pages,
    run_page,
    unmarked,
)


def test_the_site_builds_strictly_with_the_generated_reference(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
                          check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    cli = (site / "reference" / "cli" / "index.html").read_text()
    for command in ("agentic run", "agentic validate", "agentic approvals", "--budget-block"):
        assert command in cli, command
    plan = (site / "reference" / "plan-format" / "index.html").read_text()
    assert "depends_on" in plan and "requires_approval" in plan
    from prefect_agentic.record.events import EVENTS

    events = (site / "reference" / "events" / "index.html").read_text()
    assert [name for spec in EVENTS for name in spec.names() if name not in events] == []
    assert (site / "assets" / "logos" / "agentic-sandbox-settings.svg").is_file()


def test_every_block_in_the_docs_is_marked() -> None:
    problems = [p for page in pages() for p in unmarked(page)]
    assert not problems, "\n".join(problems)


def test_an_unmarked_block_is_reported_with_its_place(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# t\n\n<!-- docs-test: fragment -->\n```python\nx = 1\n```\n\n```bash\nls\n```\n"
                    "\n<!-- docs-test: skip -->\n```yaml\na: 1\n```\n"
                    "\n```\nplain output\n```\n\n```text\nmore output\n```\n")
    problems = unmarked(page)
    assert len(problems) == 4
    assert problems[0].endswith(":8: ```bash block has no <!-- docs-test: ... --> marker")
    assert "skip needs a reason" in problems[1]
    assert problems[2].endswith(":17: ``` (no language) block has no <!-- docs-test: ... --> marker")
    assert problems[3].endswith(":21: ```text block has no <!-- docs-test: ... --> marker")
    assert [b.kind for b in blocks_of(page)] == ["fragment", None, "skip", None, None]


def test_command_lines_belong_in_a_console_block_that_runs_or_is_skipped(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- docs-test: output-of \"agentic recipes\" -->\n```\n$ agentic recipes\nfix-lint\n```\n\n"
                    "<!-- docs-test: skip needs an LLM -->\n```\n$ agentic draft goal\n```\n\n"
                    "<!-- docs-test: run cwd=repo -->\n```console\n$ agentic recipes\n```\n\n"
                    "<!-- docs-test: fragment -->\n```text\nplain output\n```\n\n"
                    "<!-- docs-test: run -->\n```yaml\na: 1\n```\n\n"
                    "<!-- docs-test: fragment -->\n```console\n$ agentic recipes\nfix-lint\n```\n")
    problems = unmarked(page)
    assert len(problems) == 4, problems
    assert problems[0].endswith(":2: ``` (no language) block shows `$ ` command lines: make it ```console "
                                "(and run it) or skip it with a reason")
    assert problems[1].startswith(f"{page}:18: `fragment` has nothing to parse in ```text blocks")
    assert problems[2].startswith(f"{page}:23: `run` does not apply to ```yaml blocks")
    assert problems[3].startswith(f"{page}:28: a `fragment` checks commands, not the output this block shows")


def test_a_run_block_can_run_its_commands_in_the_checkout(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- docs-test: run cwd=repo -->\n```console\n$ ls mkdocs.yml\nmkdocs.yml\n```\n")
    assert run_page(page, tmp_path, None) == 1
    page.write_text("<!-- docs-test: run exit=2 -->\n```console\n$ ls mkdocs.yml\n…No such file…\n```\n")
    assert run_page(page, tmp_path, None) == 1  # the page's own directory by default
    page.write_text("<!-- docs-test: run cwd=docs -->\n```console\n$ ls\n```\n")
    with pytest.raises(DocsTestError, match="options are exit=N and cwd=repo"):
        run_page(page, tmp_path, None)


def test_output_comparison_normalizes_what_varies_and_honours_ellipses() -> None:
    actual = normalize("flow run 4883de33-b6e6-476c-9e03-c04e9ee393b6 done in 1.8s\nA\nB\nend\n", {})
    def docs(text: str) -> list[str]:
        return normalize(text, {})

    assert matches(docs("flow run 0a0a0a0a-0000-4000-8000-000000000000 done in 9.9s\n…\nend"), actual)
    assert matches(docs("flow run … done…\nA\nB\nend"), actual)
    assert not matches(docs("flow run <id> done in 1.8s\nend"), actual)
    assert not matches(docs("flow run <id> done in 1.8s\nA\nC\nend"), actual)
    assert docs("head " + "ab" * 32) == ["head <hex>"]  # a sha256, as audit logs have
    # a table whose column a longer duration widened
    assert matches(docs("┏━━━━━━━┓\n┃  mean ┃\n│ 5.33s │"), docs("┏━━━━━━━━━┓\n┃    mean ┃\n│ 112.07s │"))
    assert not matches(docs("│ lint │ 0.40s │"), docs("│ fix │ 0.40s │"))


def test_the_events_reference_lists_every_event_the_code_emits() -> None:
    """The table of events against the code: for every value the code writes where a record's
    event takes its name from (found in the source, or in the enum or model it comes from),
    ``event_name`` (what the emitter calls) gives a name of that table entry, which the generated
    page lists; the entry lists exactly those values, and its record is one the code writes."""
    from prefect_agentic.chaos.spec import FaultKind
    from prefect_agentic.gates.answer import Decision
    from prefect_agentic.loop.escalation import Action
    from prefect_agentic.record.audit import GENESIS, AuditRecord
    from prefect_agentic.record.events import EVENTS, event_name

    kinds, written = recorded_values()
    # values the code takes from a model or an enum, which no literal in a record call shows
    written["step_finished", "status"] |= step_report_statuses()
    written["chaos_fault", "kind"] |= {kind.value for kind in FaultKind}
    written["approval", "decision"] |= set(get_args(Decision))
    written["approval", "answer.action"] |= set(get_args(Action))
    page = docs_reference().events_reference()
    for spec in EVENTS:
        assert spec.record in kinds, f"the table has {spec.record} records, which no code writes"
        if spec.key:
            assert set(spec.values) == written[spec.record, spec.key], (spec.record, spec.key)
        for value in spec.values or [None]:
            data = {**spec.when, **(_nested(spec.key, value) if spec.key else {})}
            record = AuditRecord(seq=0, at=datetime.now(timezone.utc), kind=spec.record, data=data, prev=GENESIS)
            name = event_name(record)
            assert name in spec.names(), (data, name)
            assert f"`{name}`" in page, name


PACKAGE = ROOT / "prefect_agentic"
RECORDING = {"record", "_record"}


def recorded_values() -> tuple[set[str], defaultdict[tuple[str, str], set[str]]]:
    """What the package's source writes into audit records: the kinds, and per (kind, data key) the
    strings written there as literals (directly, through a conditional or a local variable). A record
    call is ``….record("kind", data)`` or ``_record("kind", …)``, or a call of a function that records
    one kind with the data its caller gives (``self._record(step, data)``)."""
    kinds: set[str] = set()
    values: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        wrappers = _recording_wrappers(tree)
        for function in _functions(tree):
            for call in (node for node in ast.walk(function) if isinstance(node, ast.Call)):
                name, kind = _called(call), _literal_kind(call)
                if name in RECORDING and kind is not None:
                    data = call.args[1:]
                elif name in wrappers:
                    kind, data = wrappers[name], call.args
                else:
                    continue
                kinds.add(kind)
                for arg in data:
                    for key, value in _dict_items(arg):
                        values[kind, key] |= _strings(value, function)
    return kinds, values


def step_report_statuses() -> set[str]:
    """The statuses the package builds a ``StepReport`` with (``status=StepStatus.X``)."""
    from prefect_agentic.record.progress import StepStatus

    found = set()
    for path in PACKAGE.rglob("*.py"):
        for call in (node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)):
            if _called(call) != "StepReport":
                continue
            for keyword in (k for k in call.keywords if k.arg == "status"):
                found |= {StepStatus[node.attr].value for node in ast.walk(keyword.value)
                          if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                          and node.value.id == "StepStatus"}
    return found


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _recording_wrappers(tree: ast.AST) -> dict[str, str]:
    """Functions of a module that record a literal kind with data passed in as a parameter."""
    found = {}
    for function in _functions(tree):
        params = {arg.arg for arg in function.args.args}
        for call in (node for node in ast.walk(function) if isinstance(node, ast.Call)):
            kind = _literal_kind(call)
            if (_called(call) in RECORDING and kind is not None
                    and any(isinstance(arg, ast.Name) and arg.id in params for arg in call.args[1:])):
                found[function.name] = kind
    return found


def _called(call: ast.Call) -> str | None:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def _literal_kind(call: ast.Call) -> str | None:
    first = call.args[0] if call.args else None
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def _dict_items(node: ast.expr) -> list[tuple[str, ast.expr]]:
    """The literal-keyed items of a dict display, or of dicts merged with ``|``."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _dict_items(node.left) + _dict_items(node.right)
    if isinstance(node, ast.Dict):
        return [(key.value, value) for key, value in zip(node.keys, node.values)
                if isinstance(key, ast.Constant) and isinstance(key.value, str)]
    return []


def _strings(node: ast.expr, scope: ast.AST) -> set[str]:
    """The string literals ``node`` can be: itself, either branch of a conditional, or what a
    variable of ``scope`` is assigned."""
    if isinstance(node, ast.Constant):
        return {node.value} if isinstance(node.value, str) else set()
    if isinstance(node, ast.IfExp):
        return _strings(node.body, scope) | _strings(node.orelse, scope)
    if isinstance(node, ast.Name):
        return {text for assign in ast.walk(scope) if isinstance(assign, ast.Assign)
                and any(isinstance(target, ast.Name) and target.id == node.id for target in assign.targets)
                for text in _strings(assign.value, scope)}
    return set()


def _nested(path: str, value: Any) -> dict[str, Any]:
    """``{"a": {"b": value}}`` for ``"a.b"``: a record's data with ``value`` under a dotted key."""
    head, _, rest = path.partition(".")
    return {head: _nested(rest, value) if rest else value}


def docs_reference() -> ModuleType:
    """scripts/docs_reference.py, the MkDocs hook that generates the reference pages."""
    spec = importlib.util.spec_from_file_location("docs_reference", ROOT / "scripts" / "docs_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RUNNABLE = [p for p in pages() if any(b.kind not in (None, "skip") for b in blocks_of(p))]


@pytest.mark.parametrize("page", RUNNABLE, ids=[str(p.relative_to(DOCS)) for p in RUNNABLE])
def test_the_page_blocks_run_as_documented(page: Path, prefect_api: str, sandbox_image: str,
                                            tmp_path: Path) -> None:
    assert run_page(page, tmp_path, prefect_api) > 0


def test_the_readme_is_a_short_front_page_whose_links_resolve() -> None:
    readme = ROOT / "README.md"
    assert readme.stat().st_size <= 15 * 1024, "the README is a front page (<= 15 KB); move detail into docs/"
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme.read_text(encoding="utf-8"))
    local = [link for link in links if "://" not in link and not link.startswith("mailto:")]
    assert local, "the README links into the docs"
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"
