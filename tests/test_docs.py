"""The documentation is tested: the site builds with `mkdocs build --strict`, every code
block in docs/ carries a docs-test marker, and every marked block is run, compared, written
or parsed (tests/docs_runner.py; the markers are described in docs/contributors.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from docs_runner import DOCS, ROOT, blocks_of, matches, normalize, pages, run_page, unmarked


def test_the_site_builds_strictly_with_the_generated_reference(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    cli = (site / "reference" / "cli" / "index.html").read_text()
    for command in ("agentic run", "agentic validate", "agentic approvals", "--budget-block"):
        assert command in cli, command
    plan = (site / "reference" / "plan-format" / "index.html").read_text()
    assert "depends_on" in plan and "requires_approval" in plan
    assert (site / "assets" / "logos" / "agentic-sandbox-settings.svg").is_file()


def test_every_checked_block_in_the_docs_is_marked() -> None:
    problems = [p for page in pages() for p in unmarked(page)]
    assert not problems, "\n".join(problems)


def test_an_unmarked_block_is_reported_with_its_place(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# t\n\n<!-- docs-test: fragment -->\n```python\nx = 1\n```\n\n```bash\nls\n```\n"
                    "\n<!-- docs-test: skip -->\n```yaml\na: 1\n```\n")
    problems = unmarked(page)
    assert len(problems) == 2
    assert problems[0].endswith(":8: ```bash block has no <!-- docs-test: ... --> marker")
    assert "skip needs a reason" in problems[1]
    assert [b.kind for b in blocks_of(page)] == ["fragment", None, "skip"]


def test_output_comparison_normalizes_what_varies_and_honours_ellipses() -> None:
    actual = normalize("flow run 4883de33-b6e6-476c-9e03-c04e9ee393b6 done in 1.8s\nA\nB\nend\n", {})
    def docs(text: str) -> list[str]:
        return normalize(text, {})

    assert matches(docs("flow run 0a0a0a0a-0000-4000-8000-000000000000 done in 9.9s\n…\nend"), actual)
    assert matches(docs("flow run … done…\nA\nB\nend"), actual)
    assert not matches(docs("flow run <id> done in 1.8s\nend"), actual)
    assert not matches(docs("flow run <id> done in 1.8s\nA\nC\nend"), actual)


RUNNABLE = [p for p in pages() if any(b.kind not in (None, "skip") for b in blocks_of(p))]


@pytest.mark.parametrize("page", RUNNABLE, ids=[str(p.relative_to(DOCS)) for p in RUNNABLE])
def test_the_page_blocks_run_as_documented(page: Path, prefect_api: str, sandbox_image: str,
                                            tmp_path: Path) -> None:
    assert run_page(page, tmp_path, prefect_api) > 0
