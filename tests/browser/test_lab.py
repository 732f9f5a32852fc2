"""The Kernel Sessions panel in a real JupyterLab, driven in headless Debian chromium.

One story, as a user lives it: create a session from the panel, attach a notebook to it, run
``x = 41 + 1``, see ``x`` in the variables table, checkpoint, then the kernel is killed from
outside: the panel shows the session dead, then restored with ``x`` intact, and the notebook
keeps working on it. Then the other actions: the command palette, fork, restore and delete a
checkpoint, a console, restart, shut down, and how little an idle panel asks of the server.
Screenshots go to ``$KERNEL_SESSIONS_SCREENSHOTS`` when set (``docs/screenshots/`` holds the
ones shown in the README: ``KERNEL_SESSIONS_SCREENSHOTS=docs/screenshots make test``), else to a
temporary directory, so a test run leaves the checkout as it was.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import playwright.sync_api as playwright_api
import pytest

from tests.browser.lab import CHROMIUM, CHROMIUM_ARGS, LabServer

SHOTS = Path(
    os.environ.get("KERNEL_SESSIONS_SCREENSHOTS")
    or __import__("tempfile").mkdtemp(prefix="ks-screenshots-")
)
VIEWPORT = {"width": 1400, "height": 820}
SESSION = "demo"
ROW = f'li.jp-KernelSessions-session[data-session="{SESSION}"]'
NOTEBOOK = "analysis.ipynb"
UI_TIMEOUT = 30_000  # ms for one UI condition on a loaded 2-core machine
RESTORE_TIMEOUT = 45.0  # s: death noticed, kernel restarted, checkpoint loaded
IDLE_WINDOW = 12.0  # s of watching an idle panel's requests

pytestmark = pytest.mark.timeout(240)


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    server = LabServer(tmp_path_factory.mktemp("lab"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(lab: LabServer) -> Iterator[Any]:
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: `make chromium` installs it"
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            context.set_default_timeout(UI_TIMEOUT)
            yield context.new_page()
        finally:
            browser.close()


def empty_notebook(lab: LabServer, path: str) -> None:
    cell = {
        "cell_type": "code",
        "source": "",
        "metadata": {},
        "outputs": [],
        "execution_count": None,
    }
    content = {
        "cells": [cell],
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {
                "name": "python3",
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
            }
        },
    }
    status, _ = lab.call("PUT", f"api/contents/{path}", {"type": "notebook", "content": content})
    assert status in (200, 201)


def kernel_idle(page: Any) -> None:
    """The notebook's kernel says Idle in the status bar (a cell run earlier is dropped)."""
    playwright_api.expect(
        page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\| Idle$"))
    ).to_have_count(1, timeout=UI_TIMEOUT)


def run_cell(page: Any, code: str, index: int) -> None:
    """Type ``code`` into cell ``index`` and run it; wait for its execution count."""
    cell = page.locator(".jp-Notebook .jp-CodeCell").nth(index)
    cell.locator(".cm-content").click()
    page.keyboard.type(code)
    page.keyboard.press("Shift+Enter")
    playwright_api.expect(cell.locator(".jp-InputArea-prompt")).to_have_text(
        re.compile(r"\[\d+\]:"), timeout=UI_TIMEOUT
    )


def screenshot(page: Any, name: str) -> None:
    """Save a screenshot for the README, without the passing notification toasts."""
    page.evaluate("""() => {
        const style = document.createElement('style');
        style.id = 'ks-hide-toasts';
        style.textContent = '.jp-toastContainer { display: none !important; }';
        document.head.append(style);
    }""")
    try:
        page.screenshot(path=str(SHOTS / name))
    finally:
        page.evaluate("() => document.getElementById('ks-hide-toasts').remove()")


def widen_sidebar(page: Any, to_x: int) -> None:
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    box = handle.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(to_x, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()


def test_panel_session_lifecycle(lab: LabServer, page: Any) -> None:
    expect = playwright_api.expect
    SHOTS.mkdir(parents=True, exist_ok=True)
    empty_notebook(lab, NOTEBOOK)
    page.goto(f"{lab.url}lab/tree/{NOTEBOOK}?reset&token={lab.token}")
    kernel_idle(page)

    # the panel, in the left sidebar
    page.locator('li[data-id="kernel-sessions-panel"]').click()
    panel = page.locator("#kernel-sessions-panel")
    expect(panel.locator(".jp-KernelSessions-title")).to_have_text("Kernel Sessions")
    expect(panel.locator('.jp-KernelSessions-poolSpec[data-spec="python3"]')).to_contain_text("/1")
    widen_sidebar(page, 600)

    # create a session from the panel
    panel.locator('[data-action="new"]').click()
    dialog = page.locator(".jp-Dialog")
    dialog.locator(".jp-KernelSessions-nameInput").fill("Not Valid")
    expect(dialog.locator(".jp-mod-accept")).to_be_disabled()  # the naming rule, before asking
    dialog.locator(".jp-KernelSessions-nameInput").fill(SESSION)
    dialog.locator(".jp-mod-accept").click()
    row = panel.locator(ROW)
    expect(row).to_have_attribute("data-state", "idle")
    expect(row.locator(".jp-KernelSessions-meta").first).to_contain_text("python3")

    # a second session of the same name: the dialog comes back with the server's reason and
    # the name as typed, until it is changed or cancelled
    panel.locator('[data-action="new"]').click()
    dialog.locator(".jp-KernelSessions-nameInput").fill(SESSION)
    dialog.locator(".jp-mod-accept").click()
    expect(dialog.locator(".jp-KernelSessions-dialogError")).to_contain_text("already exists")
    expect(dialog.locator(".jp-KernelSessions-nameInput")).to_have_value(SESSION)
    dialog.locator(".jp-mod-reject").click()
    expect(dialog).to_have_count(0)

    # attach the notebook to it
    row.locator('[data-action="attach"]').click()
    expect(page.locator(f'.jp-KernelSessions-status[data-session="{SESSION}"]')).to_have_text(
        f"Session: {SESSION}"
    )
    expect(row.locator(".jp-KernelSessions-notebooks")).to_contain_text(NOTEBOOK)
    kernel_idle(page)

    # run a cell; its variable shows in the panel
    run_cell(page, "x = 41 + 1", 0)
    if row.locator(".jp-KernelSessions-toggle").get_attribute("aria-expanded") != "true":
        row.locator(".jp-KernelSessions-toggle").click()
    x_row = row.locator('tr[data-variable="x"]')
    expect(x_row.locator(".jp-KernelSessions-varPreview")).to_have_text("42")
    expect(x_row.locator(".jp-KernelSessions-varType")).to_have_text("int")
    expect(row).to_have_attribute("data-state", "idle")

    # more variables: the table sorts and filters
    run_cell(page, "import numpy as np\nm = np.eye(30)\nwords = 'to be or not to be'.split()", 1)
    names = row.locator(".jp-KernelSessions-variablesTable tbody .jp-KernelSessions-varName")
    expect(names).to_have_text(["m", "words", "x"])
    row.locator('.jp-KernelSessions-sortButton[data-column="size"]').click()
    row.locator('.jp-KernelSessions-sortButton[data-column="size"]').click()  # descending
    expect(names).to_have_text(["m", "words", "x"])
    expect(row.locator('tr[data-variable="m"] .jp-KernelSessions-varShape')).to_have_text("30×30")
    row.locator(".jp-KernelSessions-filter").fill("nd")  # numpy.ndarray
    expect(names).to_have_text(["m"])
    row.locator(".jp-KernelSessions-filter").fill("")
    row.locator('.jp-KernelSessions-sortButton[data-column="name"]').click()
    expect(names).to_have_text(["m", "words", "x"])
    screenshot(page, "panel-variables.png")

    # checkpoint now
    row.locator('[data-action="checkpoint"]').click()
    checkpoints = row.locator(".jp-KernelSessions-checkpointsTable tr[data-checkpoint]")
    expect(checkpoints.first).to_be_visible()
    expect(row.locator(".jp-KernelSessions-lastCheckpoint")).to_contain_text("ago")
    _, listed = lab.call("GET", f"api/kernel-sessions/sessions/{SESSION}/checkpoints")
    expect(checkpoints.first).to_have_attribute("data-checkpoint", listed[0]["id"])
    assert listed[0]["variable_count"] >= 3  # x, m, words (and the module np)
    expect(checkpoints.first.locator(".jp-KernelSessions-cpVars")).to_have_text(
        str(listed[0]["variable_count"])
    )

    # kill the kernel from outside; the panel records every state it shows
    page.evaluate(
        """(selector) => {
        window.__ksStates = [];
        const li = document.querySelector(selector);
        new MutationObserver(records => {
            for (const r of records) window.__ksStates.push(r.target.getAttribute('data-state'));
        }).observe(li, {attributes: true, attributeFilter: ['data-state']});
    }""",
        ROW,
    )
    status, session = lab.call("GET", f"api/kernel-sessions/sessions/{SESSION}")
    assert status == 200, session
    pid = lab.kernel_pid(session["kernel"]["id"])
    os.kill(pid, signal.SIGKILL)

    states = wait_for(
        lambda: (lambda s: s if "dead" in s and s[-1] == "idle" else None)(
            page.evaluate("window.__ksStates")
        ),
        RESTORE_TIMEOUT,
        "the session to go dead and come back",
    )
    assert "restoring" in states[states.index("dead") :], states
    expect(row).to_have_attribute("data-state", "idle")
    history = row.locator(".jp-KernelSessions-transition")
    expect(history.filter(has_text="dead")).to_have_count(1)
    expect(row.locator('tr[data-variable="x"] .jp-KernelSessions-varPreview')).to_have_text("42")
    expect(row.locator('tr[data-variable="m"] .jp-KernelSessions-varShape')).to_have_text("30×30")
    # JupyterLab's own notice that the notebook's kernel died and restarts
    restarting = page.locator(".jp-Dialog", has_text="Kernel Restarting")
    if restarting.count():
        restarting.locator(".jp-mod-accept").click()
    screenshot(page, "panel-restored.png")

    # the notebook is still attached and its namespace is back
    kernel_idle(page)
    run_cell(page, "x * 2", 2)
    output = page.locator(".jp-Notebook .jp-CodeCell").nth(2).locator(".jp-OutputArea-output")
    expect(output).to_have_text("84")
    _, after = lab.call("GET", f"api/kernel-sessions/sessions/{SESSION}")
    assert after["kernel"]["id"] == session["kernel"]["id"]
    assert after["state"] == "idle"


def palette_items(page: Any, query: str) -> list[str]:
    """The command palette's items for ``query``.

    Retried: while JupyterLab is still settling, focus moves (to the launcher, say) and the
    modal palette closes again.
    """
    palette = page.locator(".lm-CommandPalette-input")
    items = page.locator(".lm-CommandPalette-item .lm-CommandPalette-itemLabel")
    for _ in range(10):
        if not palette.is_visible():
            page.keyboard.press("Control+Shift+C")
        try:
            palette.fill(query, timeout=2000)
            playwright_api.expect(items.first).to_be_visible(timeout=2000)
            labels = items.all_inner_texts()
            if palette.is_visible():
                return labels
        except (AssertionError, playwright_api.TimeoutError):
            continue
    raise AssertionError("the command palette did not open")


def accept_dialog(page: Any, title: str) -> None:
    dialog = page.locator(".jp-Dialog", has_text=title)
    dialog.locator(".jp-mod-accept").click()
    playwright_api.expect(dialog).to_have_count(0)


def test_panel_actions(lab: LabServer, page: Any) -> None:
    """Fork, restore and delete a checkpoint, open a console, restart and shut down; the palette."""
    expect = playwright_api.expect
    name, fork = "ops", "ops-fork"
    assert lab.call("POST", "api/kernel-sessions/sessions", {"name": name})[0] == 201
    status, result = lab.call(
        "POST", f"api/kernel-sessions/sessions/{name}/execute", {"code": "y = 7"}
    )
    assert status == 200 and result["status"] == "ok", result
    status, cp = lab.call(
        "POST", f"api/kernel-sessions/sessions/{name}/checkpoints", {"label": "seven"}
    )
    assert status == 201, cp

    page.goto(f"{lab.url}lab?reset&token={lab.token}")
    page.locator('li[data-id="kernel-sessions-panel"]').click()
    panel = page.locator("#kernel-sessions-panel")
    expect(panel.locator(".jp-KernelSessions-title")).to_be_visible()
    widen_sidebar(page, 520)
    row = panel.locator(f'li.jp-KernelSessions-session[data-session="{name}"]')
    row.locator(".jp-KernelSessions-toggle").click()
    cp_row = row.locator(f'tr[data-checkpoint="{cp["id"]}"]')
    expect(cp_row.locator(".jp-KernelSessions-cpLabel")).to_have_text("seven")

    # every action is in the command palette
    labels = palette_items(page, "kernel session")
    for label in (
        "New Kernel Session…",
        "Attach Current Notebook to a Kernel Session…",
        "Open Console on a Kernel Session…",
        "Checkpoint a Kernel Session Now…",
        "Restart a Kernel Session…",
        "Shut Down a Kernel Session…",
        "Restore a Kernel Session Checkpoint…",
        "Fork a Kernel Session Checkpoint…",
        "Delete a Kernel Session Checkpoint…",
    ):
        assert label in labels, labels
    page.keyboard.press("Escape")

    # fork the checkpoint into a new session
    cp_row.locator('[data-action="fork"]').click()
    page.locator(".jp-Dialog .jp-KernelSessions-nameInput").fill(fork)
    accept_dialog(page, "Fork Checkpoint")
    fork_row = panel.locator(f'li.jp-KernelSessions-session[data-session="{fork}"]')
    fork_y = fork_row.locator('tr[data-variable="y"] .jp-KernelSessions-varPreview')
    expect(fork_y).to_have_text("7")

    # restore: what was changed since comes back, what is new goes (after confirming)
    lab.call("POST", f"api/kernel-sessions/sessions/{name}/execute", {"code": "y = 0\nz = 1"})
    expect(row.locator('tr[data-variable="z"]')).to_have_count(1)
    cp_row.locator('[data-action="restore"]').click()
    accept_dialog(page, "Restore Checkpoint")
    expect(row.locator('tr[data-variable="z"]')).to_have_count(0)
    expect(row.locator('tr[data-variable="y"] .jp-KernelSessions-varPreview')).to_have_text("7")

    # a console on the session
    row.locator('[data-action="console"]').click()
    expect(page.locator(".jp-CodeConsole")).to_have_count(1)
    expect(row.locator(".jp-KernelSessions-notebooks")).to_have_text("attached: Console 1")
    fork_row.locator(".jp-KernelSessions-toggle").click()  # folded, to show both sessions
    screenshot(page, "panel-checkpoints.png")

    # restart empties the namespace (after confirming); the checkpoint stays
    row.locator('[data-action="restart"]').click()
    restart_dialog = page.locator(".jp-Dialog", has_text="Restart Kernel Session")
    expect(restart_dialog).to_contain_text("its checkpoints are kept")
    accept_dialog(page, "Restart Kernel Session")
    expect(row.locator(".jp-KernelSessions-meta").first).to_contain_text("1× restarted")
    expect(row.locator('tr[data-variable="y"]')).to_have_count(0)

    # delete the checkpoint, then shut the fork down
    cp_row.locator('[data-action="delete"]').click()
    accept_dialog(page, "Delete Checkpoint")
    expect(cp_row).to_have_count(0)
    fork_row.locator('[data-action="shutdown"]').click()
    accept_dialog(page, "Shut Down Kernel Session")
    expect(fork_row).to_have_count(0)
    status, _ = lab.call("GET", f"api/kernel-sessions/sessions/{fork}")
    assert status == 404

    # left alone, the panel asks little of the server: a poll every 10 s, and refreshes (one a
    # second at most) for what happens, such as an automatic checkpoint; a refresh that caused
    # the events that cause refreshes would show here as a steady 4 requests a second
    requests: list[str] = []
    page.on("request", lambda r: "/api/kernel-sessions/" in r.url and requests.append(r.url))
    page.wait_for_timeout(IDLE_WINDOW * 1000)
    assert len(requests) <= 2 * IDLE_WINDOW, requests


def test_panel_shows_a_hung_kernel(lab: LabServer, page: Any) -> None:
    """A SIGSTOPped session kernel shows as unresponsive with a warning, then idle again."""
    import sqlite3

    expect = playwright_api.expect
    name = "frozen"
    assert lab.call("POST", "api/kernel-sessions/sessions", {"name": name})[0] == 201
    registry = lab.base / "sessions" / "registry.sqlite3"
    with sqlite3.connect(f"file:{registry}?mode=ro", uri=True) as conn:
        (pid,) = conn.execute("SELECT pid FROM sessions WHERE name=?", (name,)).fetchone()
    page.goto(f"{lab.url}lab?reset&token={lab.token}")
    page.locator('li[data-id="kernel-sessions-panel"]').click()
    row = page.locator(f'li.jp-KernelSessions-session[data-session="{name}"]')
    expect(row).to_have_attribute("data-state", "idle")
    os.kill(pid, signal.SIGSTOP)
    try:
        expect(row).to_have_attribute("data-state", "unresponsive", timeout=60_000)
        expect(row.locator('[data-warning="unresponsive"]')).to_contain_text("heartbeat")
    finally:
        os.kill(pid, signal.SIGCONT)
    expect(row).to_have_attribute("data-state", "idle", timeout=60_000)
    expect(row.locator('[data-warning="unresponsive"]')).to_have_count(0)
    assert lab.call("DELETE", f"api/kernel-sessions/sessions/{name}")[0] == 204


def test_panel_shows_a_hibernated_session_and_wakes_it(lab: LabServer, page: Any) -> None:
    """Hibernated is a normal state: its checkpoint, no uptime, no error, and a Wake action."""
    expect = playwright_api.expect
    name = "sleepy"
    assert lab.call("POST", "api/kernel-sessions/sessions", {"name": name})[0] == 201
    code, out = lab.call(
        "POST", f"api/kernel-sessions/sessions/{name}/execute", {"code": "kept = 41 + 1"}
    )
    assert code == 200 and out["status"] == "ok", out
    assert lab.call("PATCH", f"api/kernel-sessions/sessions/{name}", {"ttl": 1})[0] == 200
    page.goto(f"{lab.url}lab?reset&token={lab.token}")
    page.locator('li[data-id="kernel-sessions-panel"]').click()
    row = page.locator(f'li.jp-KernelSessions-session[data-session="{name}"]')
    expect(row).to_have_attribute("data-state", "hibernated", timeout=60_000)  # idle past ttl
    meta = row.locator(".jp-KernelSessions-meta").first
    expect(meta.locator(".jp-KernelSessions-hibernated")).to_have_text("hibernated")
    expect(meta).not_to_contain_text("up ")
    expect(row.locator(".jp-KernelSessions-lastCheckpoint")).to_contain_text("checkpoint")
    row.locator(".jp-KernelSessions-toggle").click()
    expect(row.locator(".jp-KernelSessions-details")).to_contain_text("Wake it to list them")
    expect(row.locator(".jp-KernelSessions-inlineError")).to_have_count(0)
    assert lab.call("PATCH", f"api/kernel-sessions/sessions/{name}", {"ttl": None})[0] == 200
    row.locator('[data-action="wake"]').click()
    expect(row).to_have_attribute("data-state", "idle", timeout=60_000)
    expect(row.locator('[data-action="wake"]')).to_have_count(0)
    expect(row.locator('tr[data-variable="kept"] .jp-KernelSessions-varPreview')).to_have_text("42")
    assert lab.call("DELETE", f"api/kernel-sessions/sessions/{name}?purge=true")[0] == 204
