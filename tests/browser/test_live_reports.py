"""The Live API view's drift report and performance, in a real JupyterLab driven with chromium.

A real build of a small notebook (three features) in the lab's root; the panel serves it;
the test sends real requests to the API and labels for some answers to its ``/feedback``
(by each answer's ``x-request-id``). The panel's Performance row then counts the labelled
rows, and its Drift report button opens the API's report in a main-area tab: one chart per
feature, in an iframe that may run nothing.
"""

from __future__ import annotations

import json
import urllib.request

import pandas as pd
import pytest

from tests.release.conftest import make_project

from .conftest import ARTIFACTS, embedded_store, notebook_page

pytestmark = pytest.mark.slow
NB = "proj/tiny_ridge.ipynb"
FEATURES = {"a", "b", "c"}
LABELLED = 12


@pytest.fixture(scope="module")
def project(lab):
    from nbdeploy.bundle import build_bundle

    with embedded_store():
        nb = make_project(lab.root / "proj")
        build_bundle(nb, output=lab.root / "proj" / "bundle")
        yield lab.root / "proj"


@pytest.fixture(scope="module")
def page(lab, browser, project):
    with notebook_page(browser, lab, NB, "live-reports-last.png") as pg:
        yield pg
        if pg.locator('#nbdeploy-panel button[data-action="stop"]').is_enabled():
            pg.locator('#nbdeploy-panel button[data-action="stop"]').click()
            pg.wait_for_selector('.nbdeploy-job[data-kind="serve"][data-state="stopped"]')


def _post(url: str, doc: object) -> tuple[dict, dict]:
    req = urllib.request.Request(url, json.dumps(doc).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return {k.lower(): v for k, v in r.headers.items()}, json.loads(r.read())


def test_performance_counts_the_labels_sent_back(page, project) -> None:
    page.locator('#nbdeploy-panel button[data-action="serve"]').click()
    page.wait_for_selector('.nbdeploy-job[data-kind="serve"] .nbdeploy-api-url', timeout=120_000)
    url = page.locator(".nbdeploy-api-url").inner_text()
    live = page.locator("#nbdeploy-panel .nbdeploy-live")
    perf = live.get_by_role("region", name="Performance").locator(".nbdeploy-performance")
    perf.wait_for()
    assert perf.get_attribute("data-labels") == "0" and "no labels yet" in perf.inner_text()

    data = pd.read_csv(project / "data.csv")
    answers = []
    for row in data.head(30).to_dict("records"):
        headers, doc = _post(f"{url}/invocations", {"dataframe_records": [{k: row[k] for k in FEATURES}]})
        answers.append((headers["x-request-id"], row["t"]))
    _, fed = _post(f"{url}/feedback", [{"request_id": rid, "label": t} for rid, t in answers[:LABELLED]])
    assert fed["joined"] == LABELLED, fed

    page.wait_for_selector(f'#nbdeploy-panel .nbdeploy-performance[data-labelled="{LABELLED}"]')
    assert f"{LABELLED} label(s), {LABELLED} joined" in perf.inner_text()
    table = perf.get_by_role("table", name="Live metric against training, per version")
    rows = table.locator("tbody tr")
    assert rows.count() == 2  # a regression: MAE and RMSE of version 1
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.metric)") == ["mae", "rmse"]
    assert rows.first.locator(".nbdeploy-performance-rows").inner_text() == str(LABELLED)
    assert rows.first.locator("td").first.inner_text() == "v1"
    assert rows.first.locator("td").nth(3).inner_text() == "—"  # the notebook recorded r2, not MAE


def test_drift_report_opens_in_a_tab_with_a_chart_per_feature(page) -> None:
    page.get_by_role("button", name="Drift report").click()
    page.wait_for_selector('.lm-TabBar-tabLabel:text-is("Drift report")')
    frame_el = page.locator(".nbdeploy-drift-report iframe")
    frame_el.wait_for()
    assert frame_el.get_attribute("sandbox") == ""  # no scripts, no access to JupyterLab's origin
    assert "Drift report of the API at http://127.0.0.1:" in frame_el.get_attribute("title")
    report = page.frame_locator(".nbdeploy-drift-report iframe")
    sections = report.locator("section.feature")
    sections.first.wait_for()
    fields = sections.evaluate_all("ss => ss.map(s => s.dataset.field)")
    assert FEATURES <= set(fields), fields
    for name in FEATURES:
        assert report.locator(f'section.feature[data-field="{name}"] svg').count() == 1
    assert report.locator("section.feature svg").count() == len(fields)  # one chart per section
    assert report.locator("script").count() == 0
    assert "the last 30 rows" in report.locator("body").inner_text()


def test_refresh_fetches_the_report_again_and_the_button_reuses_the_tab(page, project) -> None:
    url = page.locator(".nbdeploy-api-url").inner_text()
    for row in pd.read_csv(project / "data.csv").iloc[30:40].to_dict("records"):
        _post(f"{url}/invocations", {"dataframe_records": [{k: row[k] for k in FEATURES}]})
    report = page.frame_locator(".nbdeploy-drift-report iframe")
    page.locator(".jp-MainAreaWidget:has(.nbdeploy-drift-report)").get_by_role("button", name="Refresh").click()
    report.locator("body", has_text="the last 40 rows").wait_for()
    tab = page.locator('.jp-SideBar li[data-id="nbdeploy-panel"]')
    if "lm-mod-current" not in (tab.get_attribute("class") or ""):
        tab.click()
    page.get_by_role("button", name="Drift report").click()
    assert page.locator('.lm-TabBar-tabLabel:text-is("Drift report")').count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "live-drift-report.png"))
