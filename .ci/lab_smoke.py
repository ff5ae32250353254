"""Load JupyterLab from an environment in Debian's chromium and check nbdeploy's plugin activated.

``python .ci/lab_smoke.py VENV`` (run with a Python that has playwright): starts
``VENV/bin/jupyter lab`` on 127.0.0.1 in a temporary root, opens /lab, and fails
unless the Deploy panel's sidebar tab appears and the page logged no extension
load errors. This is the browser half of ``jupyterlab.browser_check``, which itself
needs npm and Playwright's browser download (unavailable here).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def main(venv: str) -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = Path(tempfile.mkdtemp(prefix="nbdeploy-smoke-"))
    env = {"HOME": str(tmp), "PATH": f"{venv}/bin", "JUPYTER_PLATFORM_DIRS": "1"}
    log = open(tmp / "lab.log", "wb")
    proc = subprocess.Popen([f"{venv}/bin/jupyter", "lab", "--no-browser", "--allow-root",
                             "--ip=127.0.0.1", f"--port={port}", "--IdentityProvider.token=smoke",
                             f"--ServerApp.root_dir={tmp}"], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{url}/api/status?token=smoke", timeout=2)
                break
            except OSError:
                time.sleep(0.3)
        errors: list[str] = []
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=os.environ.get("NBDEPLOY_CHROMIUM", "/usr/bin/chromium"),
                                  headless=True, args=ARGS)
            page = b.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{url}/lab?token=smoke")
            page.wait_for_selector('.jp-SideBar li[data-id="nbdeploy-panel"]', timeout=120_000)
            b.close()
        bad = [e for e in errors if "nbdeploy" in e]
        if bad:
            print("extension errors:", *bad, sep="\n  ")
            return 1
        print(f"JupyterLab loaded nbdeploy:plugin from {venv} (Deploy panel in the sidebar)")
        return 0
    finally:
        proc.terminate()
        proc.wait(timeout=20)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
