"""The panel's Versions section in a real JupyterLab: Promote (refused, then forced), Rollback.

Two real builds of a small notebook in the lab's root; version 1's passing verify is recorded
with :func:`nbdeploy.bundle.catalog.record_verify` (verify itself runs in test_panel.py). The
aliases are read back from the registry with MlflowClient after each click.
"""

from __future__ import annotations

import pytest

from tests.release.conftest import NAME, build_two_versions

from .conftest import ARTIFACTS, embedded_store, notebook_page

pytestmark = pytest.mark.slow
NB = "proj/tiny_ridge.ipynb"


@pytest.fixture(scope="module")
def project(lab):
    from nbdeploy.bundle.catalog import record_verify

    with embedded_store():
        v1, _ = build_two_versions(lab.root / "proj")
        record_verify(v1, True, "verified")
        yield lab.root / "proj"


@pytest.fixture(scope="module")
def page(lab, browser, project):
    with notebook_page(browser, lab, NB, "releases-last.png") as pg:
        yield pg


def _aliases(project) -> dict[str, str]:
    from mlflow import MlflowClient

    uri = f"sqlite:///{project / '.nbdeploy' / 'mlflow.db'}"
    model = MlflowClient(tracking_uri=uri, registry_uri=uri).get_registered_model(NAME)
    return {a: str(v) for a, v in model.aliases.items()}


def _confirm(page, title: str) -> None:
    """Promote and Rollback ask first: the dialog names the move; accept it."""
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for()
    assert title in dialog.locator(".jp-Dialog-header").inner_text()
    dialog.locator(".jp-mod-accept").click()
    dialog.wait_for(state="detached")


def _row(page, version: str):
    return page.locator(f'#nbdeploy-panel .nbdeploy-version[data-version="{version}"]')


def test_the_panel_lists_versions(page) -> None:
    page.wait_for_selector("#nbdeploy-panel .nbdeploy-version")
    versions = page.locator("#nbdeploy-panel .nbdeploy-version").evaluate_all(
        "els => els.map(e => e.dataset.version)")
    assert versions == ["2", "1"]
    assert "Versions of tiny-ridge" in page.locator(".nbdeploy-versions-title").inner_text()
    assert _row(page, "1").locator("td").nth(2).inner_text() == "✓"
    assert _row(page, "2").locator('button[data-action="promote"]').is_visible()
    assert page.locator('#nbdeploy-panel button[data-action="rollback"]').is_disabled()


def test_promote_asks_first_and_cancel_moves_nothing(page, project) -> None:
    _row(page, "1").locator('button[data-action="promote"]').click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for()
    assert "Promote version 1 to champion?" in dialog.inner_text()
    assert "tiny-ridge@champion: — → 1" in dialog.inner_text()
    dialog.locator(".jp-mod-reject").click()
    dialog.wait_for(state="detached")
    assert _aliases(project) == {}
    assert page.locator("#nbdeploy-panel .nbdeploy-move-result").count() == 0


def test_promote_refused_then_forced(page, project) -> None:
    _row(page, "2").locator('button[data-action="promote"]').click()
    _confirm(page, "Promote version 2 to champion?")
    error = page.locator("#nbdeploy-panel .nbdeploy-versions .nbdeploy-error")
    error.wait_for()
    assert "version 2 has no passing verify" in error.inner_text()
    assert _aliases(project) == {}
    page.locator('#nbdeploy-panel button[data-action="force-promote"]').click()
    _confirm(page, "Force-promote version 2 to champion?")
    page.wait_for_selector('#nbdeploy-panel .nbdeploy-version[data-version="2"][data-aliases="champion"]')
    assert _aliases(project) == {"champion": "2"}
    assert "(forced)" in page.locator("#nbdeploy-panel .nbdeploy-move-result").inner_text()


def test_promote_a_verified_version_then_roll_back(page, project) -> None:
    _row(page, "1").locator('button[data-action="promote"]').click()
    _confirm(page, "Promote version 1 to champion?")
    page.wait_for_selector('#nbdeploy-panel .nbdeploy-version[data-version="1"][data-aliases="champion"]')
    assert _aliases(project) == {"champion": "1"}
    page.locator('#nbdeploy-panel button[data-action="rollback"]').click()
    _confirm(page, "Roll champion back?")
    page.wait_for_selector('#nbdeploy-panel .nbdeploy-version[data-version="2"][data-aliases="champion"]')
    assert _aliases(project) == {"champion": "2"}
    import getpass

    from nbdeploy.release import read_history

    assert f"rollback by {getpass.getuser()}" in page.locator("#nbdeploy-panel .nbdeploy-last-move").inner_text()
    assert [m.user for m in read_history(NAME, project).moves] == [getpass.getuser()] * 3
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "releases-rolled-back.png"))
