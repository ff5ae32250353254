"""End to end: the Deploy panel in a real JupyterLab, driven with chromium.

Open the notebook, open the Deploy panel, see the checklist, mark the parameters
cell, Build (real ``nbdeploy build``), see the bundle link and its README, Verify
(real ``nbdeploy verify``) and see it pass. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from .conftest import ARTIFACTS, NOTEBOOK, REPO

pytestmark = pytest.mark.slow

BUILD_TIMEOUT_MS = 300_000


@pytest.fixture(scope="module")
def page(lab, browser):
    ctx = browser.new_context(viewport={"width": 1500, "height": 950})
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    for attempt in range(3):  # a loaded machine can make JupyterLab's theme CSS time out
        pg.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?token={lab.token}&reset")
        pg.wait_for_selector(".jp-Notebook .jp-Cell", state="visible")
        pg.wait_for_timeout(1000)
        if not pg.locator(".jp-Dialog").count():
            break
        _shot(pg, f"00-dialog-{attempt}")
        pg.locator(".jp-Dialog .jp-Dialog-button").last.click()
    yield pg
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / "panel-last.png"))
    ctx.close()


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def _open_panel(page) -> None:
    tab = page.locator('.jp-SideBar li[data-id="nbdeploy-panel"]')
    if "lm-mod-current" not in (tab.get_attribute("class") or ""):
        tab.click()
    page.wait_for_selector("#nbdeploy-panel .nbdeploy-item", state="visible")


def test_checklist_follows_the_notebook(page) -> None:
    _open_panel(page)
    panel = page.locator("#nbdeploy-panel")
    assert panel.locator(".nbdeploy-notebook").inner_text() == NOTEBOOK
    keys = panel.locator(".nbdeploy-item").evaluate_all("els => els.map(e => e.dataset.key)")
    assert keys == ["parameters", "model", "dependencies", "lineage", "run", "bundle"]
    params = panel.locator('.nbdeploy-item[data-key="parameters"]')
    assert params.get_attribute("data-status") == "missing"
    assert "Mark as parameters cell" in params.locator(".nbdeploy-action").inner_text()
    _shot(page, "01-checklist")


def test_mark_the_parameters_cell_from_the_context_menu(page, lab) -> None:
    cell = page.locator(".jp-Notebook .jp-Cell").nth(2)
    assert "n_estimators" in cell.inner_text()
    cell.locator(".jp-InputPrompt").click()
    cell.locator(".jp-InputPrompt").click(button="right")
    page.locator('.lm-Menu-itemLabel:text-is("Mark as Parameters Cell (nbdeploy)")').click()
    page.wait_for_selector('.nbdeploy-item[data-key="parameters"][data-status="ok"]')
    saved = json.loads((lab.root / NOTEBOOK).read_text())
    tagged = [i for i, c in enumerate(saved["cells"]) if "parameters" in c["metadata"].get("tags", [])]
    assert tagged == [2]


def test_writes_need_the_xsrf_token(page, lab) -> None:
    # the page's session is a cookie: a POST without the XSRF header is refused
    status = page.evaluate("""async (url) => (await fetch(url, {method: 'POST', credentials: 'same-origin',
        body: JSON.stringify({kind: 'run', path: 'x.ipynb'})})).status""", f"{lab.url}/nbdeploy/jobs")
    assert status == 403


def _finish(page, kind: str, timeout: int = BUILD_TIMEOUT_MS):
    page.wait_for_selector(f'.nbdeploy-job[data-kind="{kind}"]')
    page.wait_for_selector(f'.nbdeploy-job[data-kind="{kind}"]:not([data-state="running"])',
                           timeout=timeout)
    job = page.locator(".nbdeploy-job")
    assert job.get_attribute("data-state") == "succeeded", job.inner_text()
    return job


def test_run_fills_dependencies_and_lineage(page) -> None:
    page.locator('#nbdeploy-panel button[data-action="run"]').click()
    _finish(page, "run")
    deps = page.locator('.nbdeploy-item[data-key="dependencies"]')
    page.wait_for_selector('.nbdeploy-item[data-key="dependencies"]:not([data-status="missing"])')
    assert "pinned" in deps.inner_text()
    if deps.get_attribute("data-status") == "error":  # unresolved imports are rows flagged in red
        red = deps.locator("tr.nbdeploy-error")
        assert red.count() >= 1 and "unresolved" in red.first.inner_text()
        color = red.first.evaluate("e => getComputedStyle(e).color")
        assert color.startswith("rgb(") and color != "rgb(0, 0, 0)"
    lineage = page.locator('.nbdeploy-item[data-key="lineage"]')
    assert lineage.get_attribute("data-status") == "ok"
    assert "1 read, 1 written" in lineage.inner_text()
    rows = lineage.locator(".nbdeploy-detail").all_text_contents()  # inside a closed <details>
    assert any("read data/churn.csv" in r and "rows ·" in r for r in rows), rows
    assert page.locator('.nbdeploy-item[data-key="model"]').get_attribute("data-status") == "ok"
    assert page.locator('.nbdeploy-item[data-key="run"]').get_attribute("data-status") == "warning"
    _shot(page, "02-after-run")


def test_reproduce_matches_the_run(page) -> None:
    page.locator('#nbdeploy-panel button[data-action="reproduce"]').click()
    page.wait_for_selector('.nbdeploy-job[data-kind="reproduce"]')
    _finish(page, "reproduce")
    item = page.locator('.nbdeploy-item[data-key="run"]')
    page.wait_for_selector('.nbdeploy-item[data-key="run"][data-status="ok"]')
    assert "reproduced: all" in item.inner_text()


def test_build_shows_progress_and_the_bundle(page, lab) -> None:
    page.locator('#nbdeploy-panel button[data-action="build"]').click()
    page.wait_for_selector('.nbdeploy-job[data-kind="build"][data-state="running"] progress')
    page.wait_for_selector('.nbdeploy-job[data-kind="build"] .nbdeploy-step:has-text("run the notebook")')
    _shot(page, "03-build-running")
    job = _finish(page, "build")
    link = job.locator(".nbdeploy-bundle-link")
    assert link.inner_text() == "churn_classifier-bundle"
    assert (lab.root / "churn_classifier-bundle" / "nbdeploy.json").is_file()
    # the bundle's README is opened in JupyterLab
    page.wait_for_selector('.lm-TabBar-tabLabel:text-is("README.md")')
    _shot(page, "03b-built")
    _open_panel(page)
    bundle = page.locator('.nbdeploy-item[data-key="bundle"]')
    page.wait_for_selector('.nbdeploy-item[data-key="bundle"][data-status="warning"]')
    assert "not verified" in bundle.inner_text()
    # with a bundle, both checks are offered: a lock-only venv, or the bundle's container image
    for action in ("verify", "verify-container"):
        assert page.locator(f'#nbdeploy-panel button[data-action="{action}"]').is_enabled()


def test_verify_passes(page, lab) -> None:
    _open_panel(page)
    page.locator('#nbdeploy-panel button[data-action="verify"]').click()
    _finish(page, "verify")
    page.wait_for_selector('.nbdeploy-item[data-key="bundle"][data-status="ok"]')
    assert "verified" in page.locator('.nbdeploy-item[data-key="bundle"]').inner_text()
    _shot(page, "04-verified")


def _widen_the_panel(page) -> None:
    """Drag the sidebar's edge to 560 px and make the window taller, the panel scrolled to its top."""
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    box = handle.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(560, y, steps=8)
    page.mouse.up()
    page.set_viewport_size({"width": 1500, "height": 1300})
    page.locator("#nbdeploy-panel").evaluate("e => { e.scrollTop = 0; }")
    page.wait_for_timeout(500)


def test_serve_shows_the_api_url_and_stops(page, lab) -> None:
    page.locator('#nbdeploy-panel button[data-action="serve"]').click()
    page.wait_for_selector('.nbdeploy-job[data-kind="serve"] .nbdeploy-api-url', timeout=120_000)
    url = page.locator(".nbdeploy-api-url").inner_text()
    assert url.startswith("http://127.0.0.1:")
    curl = page.locator(".nbdeploy-curl").inner_text()
    assert "/invocations" in curl
    if shutil.which("curl"):  # the sample request works as shown
        out = subprocess.run(curl, shell=True, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "predictions" in out.stdout, (out.stdout, out.stderr)
        page.wait_for_selector('#nbdeploy-panel .nbdeploy-live[data-requests="1"]')
    live = page.locator('#nbdeploy-panel .nbdeploy-live[data-up="true"]')
    live.wait_for()
    assert live.locator('tr[data-key="version"] td').inner_text() == "churn-classifier v1"
    assert live.locator(".nbdeploy-live-url").inner_text() == url
    # the README's picture: the checklist (ready), the serve job and its live view; the log folded
    page.locator("#nbdeploy-panel .nbdeploy-log-box > summary").click()
    page.wait_for_timeout(1500)  # a poll or two re-render the job: the log stays folded
    assert page.locator("#nbdeploy-panel .nbdeploy-log-box").evaluate("e => e.open") is False
    _widen_the_panel(page)
    _shot(page, "05-serving")
    if os.environ.get("NBDEPLOY_UPDATE_SCREENSHOT"):  # refresh the README's screenshot
        shutil.copy(ARTIFACTS / "05-serving.png", REPO / "docs" / "panel.png")
    page.set_viewport_size({"width": 1500, "height": 950})
    page.locator('#nbdeploy-panel button[data-action="stop"]').click()
    page.wait_for_selector('.nbdeploy-job[data-kind="serve"][data-state="stopped"]')
