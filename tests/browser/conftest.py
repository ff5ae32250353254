"""A real ``jupyter lab`` on 127.0.0.1 with a temporary root, and Debian's chromium driven by Playwright."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "example_notebooks"
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = os.environ.get("NBDEPLOY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]
NOTEBOOK = "churn_classifier.ipynb"


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    log: Path

    def api(self, path: str) -> dict:
        req = urllib.request.Request(f"{self.url}{path}", headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _example_root(root: Path) -> None:
    """The churn example, with its parameters tag removed so the test can mark the cell."""
    for name in ("features.py",):
        shutil.copy(EXAMPLES / name, root / name)
    shutil.copytree(EXAMPLES / "data", root / "data")
    nb = json.loads((EXAMPLES / NOTEBOOK).read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if "parameters" in tags:
            tags.remove("parameters")
    (root / NOTEBOOK).write_text(json.dumps(nb, indent=1) + "\n", encoding="utf-8")


BUILT = REPO / "nbdeploy" / "labextension"  # `jlpm build` in labextension/ writes the extension here


def _this_build_first(base: Path) -> str:
    """A JUPYTER_PATH whose labextensions/nbdeploy is this checkout's build: JupyterLab takes the
    first extension of a name on its path, so the panel under test is the one built from this
    tree, not one an environment links to another checkout."""
    if not (BUILT / "package.json").is_file():
        pytest.fail(f"no built labextension at {BUILT}: run `jlpm build` in labextension/")
    data = base / "jupyter-data"
    (data / "labextensions").mkdir(parents=True)
    (data / "labextensions" / "nbdeploy").symlink_to(BUILT, target_is_directory=True)
    return os.pathsep.join([str(data), *filter(None, [os.environ.get("JUPYTER_PATH")])])


def _check_served_build(lab: Lab) -> None:
    """The page loads this checkout's build: its remoteEntry (content-hashed name) is the one in BUILT."""
    import re

    req = urllib.request.Request(f"{lab.url}/lab?token={lab.token}")
    with urllib.request.urlopen(req, timeout=30) as r:
        page = r.read().decode()
    config = json.loads(re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', page, re.S)[1])
    ours = [e for e in config["federated_extensions"] if e["name"] == "nbdeploy"]
    built = json.loads((BUILT / "package.json").read_text())["jupyterlab"]["_build"]["load"]
    if [e["load"] for e in ours] != [built]:
        raise RuntimeError(f"jupyter lab serves another nbdeploy labextension ({ours}), not {BUILT} ({built})")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    root.mkdir()
    _example_root(root)
    port, token = _free_port(), "nbdeploy-browser-test"
    env = {**os.environ, "JUPYTER_PATH": _this_build_first(base), "JUPYTER_CONFIG_DIR": str(base / "config"),
           "JUPYTER_RUNTIME_DIR": str(base / "runtime"), "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"), "MLFLOW_TRACKING_URI": ""}
    env.pop("MLFLOW_TRACKING_URI")
    notification = base / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text('{"fetchNews": "false", "checkForUpdates": false}')
    log = base / "jupyter-lab.log"
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    lab = Lab(url, token, root, log)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                lab.api("/api/status")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"jupyter lab did not start:\n{log.read_text()}") from None
                time.sleep(0.3)
        _check_served_build(lab)
        yield lab
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(log, ARTIFACTS / "jupyter-lab.log")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@contextlib.contextmanager
def embedded_store() -> Iterator[None]:
    """Builds inside use the project's embedded MLflow store, whatever the environment names."""
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved


@contextlib.contextmanager
def notebook_page(browser: object, lab: Lab, notebook: str, last_shot: str,
                  height: int = 950) -> Iterator[object]:
    """A page of ``lab`` with ``notebook`` open (a leftover dialog dismissed) and the Deploy
    panel shown; a screenshot ``last_shot`` in test-artifacts/ when it closes."""
    ctx = browser.new_context(viewport={"width": 1500, "height": height})  # type: ignore[attr-defined]
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    try:
        pg.goto(f"{lab.url}/lab/tree/{notebook}?token={lab.token}&reset")
        pg.wait_for_selector(".jp-Notebook .jp-Cell", state="visible")
        pg.wait_for_timeout(1000)
        if pg.locator(".jp-Dialog").count():
            pg.locator(".jp-Dialog .jp-Dialog-button").last.click()
        tab = pg.locator('.jp-SideBar li[data-id="nbdeploy-panel"]')
        if "lm-mod-current" not in (tab.get_attribute("class") or ""):
            tab.click()
        yield pg
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / last_shot))
    finally:
        ctx.close()
