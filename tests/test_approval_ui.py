"""The approval form in the real Prefect UI: `prefect server start`, a gated run, and headless
Chromium (Debian's, driven by Playwright) at a 1440×900 window reading, filling in and
submitting the resume form. Its screenshot is the one in docs/guides/approver.md."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, _missing
from gate_helpers import waiting_at_gates
from prefect.client.orchestration import SyncPrefectClient

from prefect_agentic.gates.store import ApprovalStore
from prefect_agentic.workspace import resolve_base, run_key

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "build" / "test-artifacts"
SCREENSHOT = ROOT / "docs" / "guides" / "approval-form.png"
WINDOW = {"width": 1440, "height": 900}
PLAN = """
id: ship
goal: Ship the release notes
steps:
  - {id: notes, tool: shell, writes_workspace: true,
     args: {command: "printf 'line %s\\n' $(seq 80) > NOTES.md"}}
  - {id: publish, tool: shell, depends_on: [notes], requires_approval: true,
     description: Publish the notes,
     args: {command: "wc -l NOTES.md && echo publishing the release notes to the documentation site, the changelog and the announcement list of the project"}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[str]:
    """`prefect server start` with its UI, on a free port and its own database."""
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "server"), "PREFECT_UI_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen([str(Path(sys.executable).with_name("prefect")), "server", "start",
                               "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{api}/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail(f"prefect server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield api
    finally:
        server.terminate()
        try:  # a server on a loaded machine may take minutes to stop; the test's claim is not that
            server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture
def chromium():  # type: ignore[no-untyped-def]
    if not os.access(CHROMIUM, os.X_OK):
        _missing(f"{CHROMIUM} is not installed (scripts/setup.sh browser)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def _paused_run(api: str, within: float = 120) -> str:
    """The run paused at its gate, once its form is there: Prefect stores the form's schema and
    description only after the run is Paused, and a page opened between shows no form."""
    deadline = time.monotonic() + within
    with SyncPrefectClient(api) as client:
        while time.monotonic() < deadline:
            paused = waiting_at_gates(client)
            if paused and _has_form(client, paused[0]):
                return str(paused[0].id)
            time.sleep(0.5)
    raise TimeoutError("the run never paused at its gate with its form stored")


def _has_form(client: SyncPrefectClient, run) -> bool:  # type: ignore[no-untyped-def]
    keyset = run.state.state_details.run_input_keyset or {}
    try:
        return all(client.read_flow_run_input(run.id, keyset[part]) for part in ("schema", "description"))
    except (KeyError, httpx.HTTPStatusError):
        return False


def _open_resume_form(page, url: str, within: float = 300):  # type: ignore[no-untyped-def]
    """Opens the run's page and its Resume form, as an approver would: on a loaded machine the
    page's first render can miss the click, so a page that shows no form is loaded again (the
    approver's reload) until ``within``; each attempt's screenshot is kept for diagnosis."""
    # playwright's presence is checked by the chromium fixture
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    deadline = time.monotonic() + within
    for attempt in itertools.count(1):
        page.goto(url)
        page.get_by_role("button", name="Resume").first.click()
        form = page.locator(".p-modal")
        try:
            form.get_by_text("Approve step").first.wait_for(timeout=60_000)
            return form
        except PlaywrightTimeoutError:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"approval-form-missing-{attempt}.png"))
            if time.monotonic() > deadline:
                raise


def _inside_window(element, what: str, height: float | None = None) -> None:  # type: ignore[no-untyped-def]
    box = element.bounding_box()
    assert box is not None, what
    bottom = box["y"] + (box["height"] if height is None else height)
    assert 0 <= box["y"] and bottom <= WINDOW["height"], (what, box)


def _check_readable(page, form) -> None:  # type: ignore[no-untyped-def]
    """What an approver needs is on screen at 1440×900 with no scrolling, in no cramped inner
    scroll box; the diff is coloured and the long command wrapped, not cut off."""
    _inside_window(form.get_by_text("files touched so far").last, "the risk summary")
    diff = form.locator("pre.agentic-diff")
    assert diff.inner_text().startswith("diff --git a/NOTES.md b/NOTES.md\nnew file mode")
    line = float(diff.evaluate("e => parseFloat(getComputedStyle(e).lineHeight) || 20"))
    padding = float(diff.evaluate("e => parseFloat(getComputedStyle(e).paddingTop)"))
    _inside_window(diff, "the first diff lines", height=padding + 8 * line)  # up to "+line 2"
    added = diff.locator("span.text-green-500").first
    assert added.inner_text() == "+line 1"
    assert added.evaluate("e => getComputedStyle(e).color") == "rgb(34, 197, 94)"
    assert diff.evaluate("e => getComputedStyle(e.closest('pre')).color") != "rgb(34, 197, 94)"
    command = form.locator("pre.agentic-command")
    width, scroll_width, height = command.evaluate("e => [e.clientWidth, e.scrollWidth, e.clientHeight]")
    assert scroll_width <= width and height > 60, (width, scroll_width, height)  # wrapped onto lines
    boxes = diff.evaluate("""e => { const cut = [];
        for (let a = e; a && !a.classList.contains('p-modal__body'); a = a.parentElement)
            if (a.scrollHeight > a.clientHeight + 1) cut.push(a.className);
        return cut; }""")
    assert boxes == [], f"the review scrolls inside {boxes}"


def test_an_approver_answers_the_form_in_the_prefect_ui(  # type: ignore[no-untyped-def]
        prefect_server, chromium, make_repo, sandbox_image, tmp_path) -> None:
    plan = tmp_path / "ship.yaml"
    plan.write_text(PLAN)
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    repo = make_repo({"README.md": "x\n"})
    run = subprocess.Popen([sys.executable, "-m", "prefect_agentic.cli.main", "run", str(plan), "--repo",
                            str(repo), "--image", sandbox_image],
                           env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        run_id = _paused_run(prefect_server)
        page = chromium.new_page(viewport=WINDOW)
        page.set_default_timeout(120_000)  # each action waits for its element; a loaded machine renders slowly
        form = _open_resume_form(page, prefect_server.removesuffix("/api") + f"/runs/flow-run/{run_id}")
        assert "Goal: Ship the release notes" in form.inner_text()
        assert "wc -l NOTES.md" in form.inner_text()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "approval-form.png"))  # kept when the checks fail
        _check_readable(page, form)
        shutil.copy(ARTIFACTS / "approval-form.png", SCREENSHOT)
        link = form.get_by_role("link", name="full diff").get_attribute("href")
        assert link.startswith(prefect_server.removesuffix("/api") + "/artifacts/artifact/"), link
        form.locator(".p-select-button__control").press("ArrowDown")  # opens the decision's options
        page.get_by_role("option", name="approve", exact=True).click()
        boxes = form.locator("textarea")
        boxes.nth(0).fill("Ada Lovelace")
        boxes.nth(1).fill("the notes read well")
        form.get_by_role("button", name="Submit").click()
        output, _ = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == 0, output
    assert "Run succeeded" in output and "publish" in output
    assert SCREENSHOT.stat().st_size > 10_000
    [approval] = ApprovalStore(run_key("ship", repo, resolve_base(repo, "HEAD"))).path.glob("approve-*.json")
    recorded = json.loads(approval.read_text())
    assert recorded["approver"] == "Ada Lovelace" and recorded["reason"] == "the notes read well"

