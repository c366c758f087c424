"""Runs the code blocks of the documentation, as docs/contributors.md ("Writing documentation")
describes: every fenced block, whatever its language (none included), carries a
``<!-- docs-test: KIND ... -->`` marker on the line before it, and is run, compared, written
as a file, parsed, or skipped with a reason. A block that shows ``$ `` command lines is a
```console block (so it can be run) unless it is skipped.

Used by tests/test_docs.py, and on its own to check pages while writing them:
``.venv/bin/python tests/docs_runner.py docs/guides/engineer.md`` (starts its own Prefect
server unless PREFECT_API_URL is set).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SHELL = {"bash", "sh", "shell"}
PYTHON = {"python", "py"}
RUNNABLE = {"console", *SHELL, *PYTHON}  # what `run` applies to
PARSED = {*RUNNABLE, "yaml", "yml", "json", "toml"}  # what `fragment` can check
KINDS = {"run", "output-of", "file", "fragment", "skip"}
OPTIONS = {"exit", "cwd"}  # trailing NAME=VALUE options of run and output-of
TIMEOUT = 300
"""A hang guard per command, not a speed claim: a run on a loaded 2-core machine takes minutes."""
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)[^\n]*$")
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<kind>[\w-]+)(?P<rest>.*?)\s*-->\s*$")
WILDCARD = "…"


@dataclass
class CodeBlock:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    content: str
    kind: str | None
    rest: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path}:{self.line}"


class DocsTestError(AssertionError):
    """A block whose check failed; the message names the file and line."""


def blocks_of(path: Path) -> list[CodeBlock]:
    """The fenced code blocks of a Markdown page with their markers (nested fences not opened)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[CodeBlock] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m["indent"], m["fence"], m["lang"].lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not _closes(lines[j], fence):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        marker = MARKER.match(lines[i - 1]) if i > 0 else None
        found.append(CodeBlock(path, i + 1, lang, "\n".join(body) + "\n",
                               marker["kind"] if marker else None, marker["rest"].strip() if marker else ""))
        i = j + 1
    return found


def _closes(line: str, fence: str) -> bool:
    text = line.strip()
    return len(text) >= len(fence) and set(text) == {fence[0]}


def unmarked(path: Path) -> list[str]:
    """Problems with markers on a page: unmarked blocks (any language, or none), unknown kinds,
    skips without reason, kinds that do not apply to the block's language (or a console fragment
    that shows output it does not check), and `$ ` command lines outside a ```console block that
    is not skipped."""
    problems = []
    for block in blocks_of(path):
        fence = f"```{block.lang}" if block.lang else "``` (no language)"
        if block.kind is None:
            problems.append(f"{block.where}: {fence} block has no <!-- docs-test: ... --> marker")
        elif block.kind not in KINDS:
            problems.append(f"{block.where}: unknown docs-test kind {block.kind!r} (known: {sorted(KINDS)})")
        elif block.kind == "skip":
            if not block.rest:
                problems.append(f"{block.where}: docs-test skip needs a reason")
            continue
        elif block.kind == "run" and block.lang not in RUNNABLE:
            problems.append(f"{block.where}: `run` does not apply to {fence} blocks (only {sorted(RUNNABLE)})")
        elif block.kind == "fragment" and block.lang not in PARSED:
            problems.append(f"{block.where}: `fragment` has nothing to parse in {fence} blocks; "
                            "run it, compare it with output-of, or skip it with a reason")
        elif block.kind == "fragment" and block.lang == "console" and any(
                line.strip() for _, output in _console(block.content) for line in output):
            problems.append(f"{block.where}: a `fragment` checks commands, not the output this block shows: "
                            "run it, or skip it with a reason")
        if block.lang != "console" and any(line.startswith("$ ") for line in block.content.splitlines()):
            problems.append(f"{block.where}: {fence} block shows `$ ` command lines: make it ```console "
                            "(and run it) or skip it with a reason")
    return problems


# --- output comparison -------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
_RULES = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<id>"),
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)?"), "<time>"),
    (re.compile(r"\b\d\d:\d\d:\d\d(\.\d+)?\b"), "<time>"),
    (re.compile(r"\b\d+(\.\d+)?\s?(ms|s)\b"), "<dur>"),
    (re.compile(r"\b[0-9a-f]{12,64}\b"), "<hex>"),  # commits, snapshots, sha256
    (re.compile(r"\b(127\.0\.0\.1|localhost):\d+"), "127.0.0.1:<port>"),
    # a run of spaces or of a table's rule counts as one, so a table whose column a longer
    # duration widened still matches
    (re.compile(r"([ ━─])\1+"), r"\1"),
]


def normalize(text: str, replacements: dict[str, str]) -> list[str]:
    text = _ANSI.sub("", text)
    for old, new in sorted(replacements.items(), key=lambda kv: -len(kv[0])):
        if old:
            text = text.replace(old, new)
    for pattern, repl in _RULES:
        text = pattern.sub(repl, text)
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return lines


def matches(expected: list[str], actual: list[str]) -> bool:
    """True when ``actual`` fits ``expected``, whose ``…`` lines match any lines and ``…``
    within a line matches any text of that line."""
    parts = []
    for line in expected:
        if line.strip() in (WILDCARD, "..."):
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append("[^\n]*".join(re.escape(piece) for piece in line.split(WILDCARD)) + r"\n")
    return re.fullmatch("".join(parts), "".join(line + "\n" for line in actual)) is not None


# --- running a page ----------------------------------------------------------------------------

@dataclass
class Session:
    """One page's scratch directory and environment."""

    scratch: Path
    env: dict[str, str]

    def replacements(self) -> dict[str, str]:
        return {str(self.scratch): ".", str(ROOT): "$REPO", self.env["HOME"]: "~"}

    def sh(self, command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-o", "pipefail", "-c", command], check=False, cwd=cwd, env=self.env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=TIMEOUT)


def page_env(home: Path, api_url: str | None) -> dict[str, str]:
    """The environment of a page's commands (see the convention)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "PYTEST_"))}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", REPO=str(ROOT),
               HOME=str(home), NO_COLOR="1", COLUMNS="100", TERM="dumb",
               PREFECT_HOME=str(home / ".prefect"), AGENTIC_HOME=str(home / ".prefect-agentic"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false")
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def run_page(path: Path, home: Path, api_url: str | None) -> int:
    """Run every marked block of ``path``; returns how many blocks ran or were checked."""
    problems = unmarked(path)
    if problems:
        raise DocsTestError("\n".join(problems))
    scratch = Path(tempfile.mkdtemp(prefix="page-", dir=home))
    session = Session(scratch, page_env(home, api_url))
    done = 0
    try:
        for block in blocks_of(path):
            if block.kind in (None, "skip"):
                continue
            _check_block(block, session)
            done += 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return done


def _options(block: CodeBlock) -> tuple[dict[str, str], str]:
    """The trailing ``NAME=VALUE`` options of a marker (``exit=2 cwd=repo``) and what is before them."""
    words = block.rest.split(" ")
    options: dict[str, str] = {}
    while words and "=" in words[-1] and words[-1].split("=", 1)[0] in OPTIONS:
        name, value = words.pop().split("=", 1)
        options[name] = value
    if not options.get("exit", "0").isdigit() or options.get("cwd", "repo") != "repo":
        raise DocsTestError(f"{block.where}: options are exit=N and cwd=repo, not {block.rest!r}")
    return options, " ".join(words).strip()


def _check_block(block: CodeBlock, session: Session) -> None:
    if block.kind == "file":
        _write_file(block, session)
    elif block.kind == "fragment":
        _parse(block)
    elif block.kind in ("output-of", "run"):
        options, rest = _options(block)
        code, cwd = int(options.get("exit", 0)), ROOT if "cwd" in options else session.scratch
        if block.kind == "output-of":
            try:
                [command] = shlex.split(rest)
            except ValueError:
                raise DocsTestError(f'{block.where}: output-of needs one quoted command: output-of "CMD"') from None
            _expect(block, session, command, block.content.splitlines(), code, cwd)
        elif block.lang == "console":
            commands = _console(block.content)
            if not commands:
                raise DocsTestError(f"{block.where}: a console block needs `$ ` command lines")
            for n, (command, expected) in enumerate(commands):
                _expect(block, session, command, expected, code if n == len(commands) - 1 else 0, cwd)
        elif block.lang in SHELL:
            _expect(block, session, "set -eu\n" + block.content, None, code, cwd)
        elif block.lang in PYTHON:
            script = session.scratch / f".block-{block.line}.py"
            script.write_text(block.content)
            try:
                _expect(block, session, f"python {shlex.quote(str(script))}", None, code, cwd)
            finally:
                script.unlink()
        else:
            raise DocsTestError(f"{block.where}: `run` does not apply to ```{block.lang} blocks")


def _console(content: str) -> list[tuple[str, list[str]]]:
    commands: list[tuple[str, list[str]]] = []
    lines = content.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            command = line[2:]
            while command.endswith("\\") and i + 1 < len(lines):
                i += 1
                command = command[:-1] + "\n" + lines[i]
            commands.append((command, []))
        elif commands:
            commands[-1][1].append(line)
        i += 1
    return commands


def _expect(block: CodeBlock, session: Session, command: str, expected: list[str] | None, code: int,
            cwd: Path) -> None:
    started = time.monotonic()
    try:
        done = session.sh(command, cwd)
    except subprocess.TimeoutExpired:
        raise DocsTestError(f"{block.where}: `{command}` ran longer than {TIMEOUT} s") from None
    took = time.monotonic() - started
    if done.returncode != code:
        raise DocsTestError(f"{block.where}: `{command}` exited {done.returncode}, expected {code} "
                            f"(took {took:.1f} s); output:\n{done.stdout[-4000:]}")
    if expected is None or not any(line.strip() for line in expected):
        return
    want = normalize("\n".join(expected), session.replacements())
    got = normalize(done.stdout, session.replacements())
    if not matches(want, got):
        raise DocsTestError(f"{block.where}: output of `{command}` differs from the docs.\n"
                            "--- docs (normalized)\n" + "\n".join(want)
                            + "\n--- actual (normalized)\n" + "\n".join(got))


def _write_file(block: CodeBlock, session: Session) -> None:
    name, _, flag = block.rest.strip().partition(" ")
    target = (session.scratch / name).resolve()
    if not name or not target.is_relative_to(session.scratch.resolve()):
        raise DocsTestError(f"{block.where}: `file` needs a relative path inside the page's directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(block.content)
    _parse(block)
    if block.lang in ("yaml", "yml"):
        data = yaml.safe_load(block.content)
        if isinstance(data, dict) and "steps" in data:
            from prefect_agentic.errors import PlanError
            from prefect_agentic.plan import load_plan

            try:
                load_plan(target)
            except PlanError as exc:
                if flag != "invalid":
                    raise DocsTestError(f"{block.where}: the plan does not load: {exc}") from None
            else:
                if flag == "invalid":
                    raise DocsTestError(f"{block.where}: the plan is marked invalid but loads")


def _parse(block: CodeBlock) -> None:
    try:
        if block.lang in PYTHON:
            compile(block.content, block.where, "exec")
        elif block.lang in ("yaml", "yml"):
            list(yaml.safe_load_all(block.content))
        elif block.lang == "json":
            json.loads(block.content)
        elif block.lang == "toml":
            tomllib.loads(block.content)
        elif block.lang in (*SHELL, "console"):
            text = block.content
            if block.lang == "console":
                text = "\n".join(c for c, _ in _console(text))
            done = subprocess.run(["bash", "-n"], check=False, input=text, text=True, capture_output=True)
            if done.returncode:
                raise DocsTestError(f"{block.where}: bash -n: {done.stderr.strip()}")
    except (SyntaxError, yaml.YAMLError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DocsTestError(f"{block.where}: the ```{block.lang} block does not parse: {exc}") from None


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


# --- standalone use ----------------------------------------------------------------------------

@contextmanager
def prefect_server(home: Path) -> Iterator[str]:
    """`prefect server start` on a free port, for running pages outside pytest."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = f"http://127.0.0.1:{port}/api"
    env = {**page_env(home, None), "PREFECT_HOME": str(home / "server")}
    log = (home / "server.log").open("w")
    server = subprocess.Popen([str(Path(sys.executable).with_name("prefect")), "server", "start", "--host",
                               "127.0.0.1", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{api}/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"prefect server did not start; see {home / 'server.log'}") from None
                time.sleep(0.5)
        yield api
    finally:
        server.terminate()
        try:  # a server on a loaded machine may take minutes to stop
            server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main(argv: list[str]) -> int:
    targets = [Path(a).resolve() for a in argv] or pages()
    home = Path(tempfile.mkdtemp(prefix="docs-test-"))
    failed = 0
    with (prefect_server(home) if not os.environ.get("PREFECT_API_URL") else _given_api()) as api:
        for page in targets:
            try:
                n = run_page(page, home, api)
                print(f"ok    {page} ({n} blocks)")
            except DocsTestError as exc:
                failed += 1
                print(f"FAIL  {page}\n{exc}\n")
    shutil.rmtree(home, ignore_errors=True)
    return 1 if failed else 0


@contextmanager
def _given_api() -> Iterator[str]:
    yield os.environ["PREFECT_API_URL"]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
