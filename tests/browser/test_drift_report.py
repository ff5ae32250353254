"""The drift report's HTML page in Debian's chromium: a chart per feature, drifted first, offline, on a phone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nbdeploy.capture.profile import profile_frame
from nbdeploy.serve.drift_html import document
from nbdeploy.serve.drift_report import assemble, buckets, feature


@pytest.fixture(scope="module")
def report_page(tmp_path_factory) -> tuple[Path, dict]:
    rng = np.random.default_rng(21)
    train = pd.DataFrame({"price": rng.lognormal(3, 0.5, 4000), "rooms": rng.integers(1, 6, 4000),
                          "area": rng.normal(80, 20, 4000), "town": rng.choice(["north", "south", "<east>"], 4000),
                          "garden": rng.random(4000) > 0.4})
    served = pd.DataFrame({"price": rng.lognormal(3.4, 0.5, 800), "rooms": rng.integers(1, 6, 800),
                           "area": rng.normal(80, 20, 800), "town": rng.choice(["north", "south", "<east>"], 800,
                                                                              p=[0.1, 0.2, 0.7]),
                           "garden": rng.random(800) > 0.4})
    profile = profile_frame(train)
    features = []
    for name, stats in profile["columns"].items():
        col = buckets(stats)
        if stats["kind"] == "numeric":
            values = served[name].to_numpy(np.float64)
            features.append(feature(name, col, stats, col.counts(values)[0], values))
        else:
            features.append(feature(name, col, stats, col.counts(served[name].tolist())))
    doc = assemble(features, source={"text": "800 rows", "model": "houses", "version": "2"}, rows=800)
    path = tmp_path_factory.mktemp("drift") / "report.html"
    path.write_text(document(doc), encoding="utf-8")
    return path, doc


def test_one_chart_per_feature_drifted_first_and_nothing_fetched(browser, report_page) -> None:
    path, doc = report_page
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(path.as_uri())
    sections = page.locator("section.feature")
    assert sections.count() == 5
    assert [sections.nth(i).locator("svg rect").count() > 0 for i in range(5)] == [True] * 5
    order = [sections.nth(i).get_attribute("data-field") for i in range(5)]
    verdicts = [sections.nth(i).get_attribute("data-verdict") for i in range(5)]
    assert set(order[:2]) == {"price", "town"} and verdicts[:2] == ["drift", "drift"]
    assert verdicts[2:] == ["stable"] * 3
    assert page.locator("section.feature[data-field='town'] svg text", has_text="<east>").count() == 1
    assert requested == [path.as_uri()]  # self-contained: no script, font or image from anywhere
    page.close()


def test_readable_on_a_phone(browser, report_page) -> None:
    path, _ = report_page
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    page.goto(path.as_uri())
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing sideways but the table's box
    box = page.locator("section.feature").first.bounding_box()
    assert box is not None and box["width"] > 300  # one column of charts, the phone's width
    page.close()
