"""The panel takes what the CLI takes, and shows what is live: driven in a real JupyterLab.

A small notebook with a parameters cell and two fitted models (each with a logged score):
Run with a parameter typed into its field (the executed notebook got it), Build that stops
at several models and then, with one chosen in the Model list, builds it into the chosen
folder; Serve with 2 workers and watch the live view count real requests; a batch over a
grid file. Every field is found by its label, the way a screen reader finds it.
"""

from __future__ import annotations

import json
import urllib.request

import nbformat
import pytest

from tests.bundle.test_candidates import two_models_project

from .conftest import ARTIFACTS, notebook_page

pytestmark = pytest.mark.slow
NB = "proj/two_models.ipynb"
JOB_TIMEOUT_MS = 300_000
@pytest.fixture(scope="module")
def page(lab, browser):
    two_models_project(lab.root / "proj")
    with notebook_page(browser, lab, NB, "options-last.png", height=1000) as pg:
        pg.wait_for_selector("#nbdeploy-panel .nbdeploy-item", state="visible")
        yield pg


def _panel(page):
    return page.locator("#nbdeploy-panel")


def _start(page, action: str) -> str:
    """Click a job button; the id of the job it started (not the one shown before)."""
    before = page.locator(".nbdeploy-job").get_attribute("data-id") or ""
    _panel(page).locator(f'button[data-action="{action}"]').click()
    page.wait_for_selector(f'.nbdeploy-job[data-id]:not([data-id="{before}"])')
    return page.locator(".nbdeploy-job").get_attribute("data-id") or ""


def _live_up(page):
    """The live view once the served API answers; else fail with what the panel shows of the job."""
    live = _panel(page).locator('.nbdeploy-live[data-up="true"]')
    try:
        live.wait_for(timeout=120_000)
    except Exception:  # playwright's TimeoutError: say what the panel showed instead
        job = page.locator(".nbdeploy-job")
        job.locator("details.nbdeploy-log-box summary").click()
        raise AssertionError("the live view did not come up; the job: " + job.inner_text()
                             + "\nthe live box: " + page.locator(".nbdeploy-live-box").inner_text()) from None
    return live


def _ended(page, action: str) -> str:
    job = _start(page, action)
    page.wait_for_selector(f'.nbdeploy-job[data-id="{job}"]:not([data-state="running"])', timeout=JOB_TIMEOUT_MS)
    return page.locator(".nbdeploy-job").get_attribute("data-state") or ""


def _succeeded(page, action: str) -> None:
    state = _ended(page, action)
    assert state == "succeeded", page.locator(".nbdeploy-job").inner_text()


def test_parameter_fields_are_typed_from_the_parameters_cell(page) -> None:
    panel = _panel(page)
    page.wait_for_selector('#nbdeploy-panel input[data-param="alpha"]')
    alpha, label, scale, noisy = (panel.get_by_label(n, exact=True) for n in ("alpha", "label", "scale", "noisy"))
    assert (alpha.get_attribute("type"), alpha.get_attribute("step"), alpha.input_value()) == ("number", "any", "0.5")
    assert (scale.get_attribute("type"), scale.get_attribute("step"), scale.input_value()) == ("number", "1", "2")
    assert (label.get_attribute("type"), label.input_value()) == ("text", "first")
    assert noisy.get_attribute("type") == "checkbox" and not noisy.is_checked()


def test_run_with_a_parameter_value(page, lab) -> None:
    from nbdeploy.job.run import list_runs

    panel = _panel(page)
    panel.get_by_label("label", exact=True).fill("from-the-panel")
    panel.get_by_label("scale", exact=True).fill("3")
    _succeeded(page, "run")
    (run,) = list_runs(lab.root / NB)
    assert run.given == {"label": "from-the-panel", "scale": 3}  # typed by the cell's defaults
    executed = nbformat.read(run.output, as_version=4)
    injected = next(c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "label = \"from-the-panel\"" in injected.source and "scale = 3" in injected.source
    printed = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "label is from-the-panel scale is 3" in printed


def test_a_bad_parameter_value_is_refused_naming_the_field(page) -> None:
    panel = _panel(page)
    panel.get_by_label("label", exact=True).fill("first")
    panel.get_by_label("scale", exact=True).fill("2.5")  # a number field takes it; the cell says int
    panel.locator('button[data-action="run"]').click()
    error = panel.locator(".nbdeploy-job .nbdeploy-request-error")
    error.wait_for()
    assert "parameter 'scale' expects int (default 2), got '2.5'" in error.inner_text()
    panel.get_by_label("scale", exact=True).fill("2")


def test_build_chooses_a_model_among_several(page, lab) -> None:
    panel = _panel(page)
    assert _ended(page, "build") == "failed"
    assert "several fitted models" in panel.locator(".nbdeploy-job-error").inner_text()
    shown = panel.locator(".nbdeploy-job").evaluate(  # what the job says outside its (folded) log
        "e => { const c = e.cloneNode(true); c.querySelectorAll('.nbdeploy-log-box').forEach(x => x.remove());"
        " return c.textContent; }")
    assert shown.count("several fitted models") == 1  # said once, not also as the result's summary
    model = panel.get_by_label("Model", exact=True)
    page.wait_for_selector('#nbdeploy-panel select[data-option="model"] option[value="tree"]', state="attached")
    options = model.locator("option").all_inner_texts()
    assert [o.split(" — ")[0] for o in options[1:]] == ["linear", "tree"]
    scores = {o.split(" — ")[0]: o for o in options[1:]}
    assert "Ridge (linear_r2 = 0." in scores["linear"] and "DecisionTreeRegressor (tree_r2 = 0." in scores["tree"]
    assert "choose one and build again (its run is reused)" in panel.locator(".nbdeploy-candidates-note").inner_text()
    model.select_option("tree")
    panel.get_by_label("Output folder", exact=True).fill("proj/bundles/tree")
    _succeeded(page, "build")
    manifest = json.loads((lab.root / "proj" / "bundles" / "tree" / "nbdeploy.json").read_text())
    assert manifest["model"]["class"].endswith("DecisionTreeRegressor")
    assert "reusing the last build's run" in panel.locator(".nbdeploy-log").inner_text()
    assert not (lab.root / "proj" / "two_models-bundle").exists()


def _predict(url: str, rows: list[list[float]]) -> int:
    return _answer(url, rows)[0]


def _answer(url: str, rows: list[list[float]]) -> tuple[int, str | None]:
    """(status, the version that answered) of one request."""
    body = json.dumps({"dataframe_split": {"columns": ["a", "b", "c"], "data": rows}}).encode()
    req = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers.get("x-model-version")
    except urllib.error.HTTPError as e:
        return e.code, None


def test_serve_with_two_workers_and_the_live_view(page) -> None:
    panel = _panel(page)
    page.locator(".lm-TabBar-tab:has-text('two_models.ipynb')").first.click()  # the build opened its README
    page.wait_for_selector('#nbdeploy-panel .nbdeploy-notebook:text-is("proj/two_models.ipynb")')
    panel.get_by_label("Workers", exact=True).fill("2")
    _start(page, "serve")
    live = _live_up(page)
    row = lambda key: live.locator(f'tr[data-key="{key}"] td')  # noqa: E731
    assert row("workers").inner_text() == "2"
    assert page.locator(".nbdeploy-log").inner_text().split("\n")[0].endswith("--workers 2")
    assert row("version").inner_text() == "two-models v1"
    url = live.locator(".nbdeploy-live-url").inner_text()
    for i in range(3):
        assert _predict(url, [[0.1 * i, 5.0, 2]]) == 200
    assert _predict(url, [["not a number", 5.0, 2]]) == 422  # the API validates against the schema
    page.wait_for_selector('#nbdeploy-panel .nbdeploy-live[data-requests="4"]')
    assert row("requests").inner_text() == "4" and row("errors").inner_text() == "1"
    assert row("drift").inner_text().startswith(("insufficient", "ok", "moderate", "drift"))
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "options-live.png"))
    panel.locator('button[data-action="stop"]').click()
    page.wait_for_selector('.nbdeploy-job[data-kind="serve"][data-state="stopped"]')
    assert panel.locator(".nbdeploy-live").count() == 0


def test_batch_over_a_grid_file(page, lab) -> None:
    from nbdeploy.job.run import list_runs

    panel = _panel(page)
    panel.get_by_label("Grid file").fill("proj/grid.yaml")
    panel.get_by_label("Batch workers", exact=True).fill("1")
    _succeeded(page, "batch")
    batch = [r for r in list_runs(lab.root / NB) if r.kind == "batch"]
    assert sorted(r.given["scale"] for r in batch) == [1, 3] and all(r.ok for r in batch)


def test_serve_with_a_shadow_then_a_canary(page, lab) -> None:
    """A second version (the linear model, built by the core here) served beside the tree: the
    live view shows the shadow's agreement, then the canary's share of the answers."""
    import os

    from nbdeploy.bundle import build_bundle

    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        build_bundle(lab.root / NB, model="linear", output=lab.root / "proj" / "bundles" / "linear")
    finally:
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    panel = _panel(page)
    panel.locator(".nbdeploy-refresh").click()
    page.wait_for_selector('#nbdeploy-panel select[data-option="candidate"] option[value="proj/bundles/linear"]',
                           state="attached")
    panel.get_by_label("Workers", exact=True).fill("1")
    panel.get_by_label("Candidate bundle", exact=True).select_option("proj/bundles/linear")
    panel.get_by_label("Candidate mode", exact=True).select_option("shadow")
    _start(page, "serve")
    live = _live_up(page)
    url = live.locator(".nbdeploy-live-url").inner_text()
    assert {_answer(url, [[0.2 * i, 4.0, 1]])[1] for i in range(5)} == {"1"}  # the shadow never answers
    shadow = live.locator('tr[data-key="shadow"] td')
    page.wait_for_selector('#nbdeploy-panel tr[data-key="shadow"] td:has-text("saw 5 request(s)")')
    assert shadow.inner_text().startswith("v2 saw 5 request(s), 5 row(s); agreement ")
    panel.locator('button[data-action="stop"]').click()
    page.wait_for_selector('.nbdeploy-job[data-kind="serve"][data-state="stopped"]')

    panel.get_by_label("Candidate mode", exact=True).select_option("canary")
    panel.get_by_label("Canary share (%)", exact=True).fill("50")
    _start(page, "serve")
    live = _live_up(page)
    url = live.locator(".nbdeploy-live-url").inner_text()
    versions = [_answer(url, [[0.1 * i, 3.0, 2]])[1] for i in range(20)]
    assert set(versions) == {"1", "2"}
    page.wait_for_selector('#nbdeploy-panel .nbdeploy-live[data-requests="20"]')
    canary = live.locator('tr[data-key="canary"] td').inner_text()
    assert canary.startswith(f"v2, 50% configured; answered {versions.count('2')} (")
    assert panel.locator('.nbdeploy-live tr[data-key="shadow"]').count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "options-canary.png"))
    panel.locator('button[data-action="stop"]').click()
    page.wait_for_selector('.nbdeploy-job[data-kind="serve"][data-state="stopped"]')


def test_a_late_answer_about_a_stopped_job_does_not_take_the_panel_back(page) -> None:
    """Stop a Serve job while the panel's poll of it is still waiting for the server's answer, start
    another at once: the answer about the stopped job, arriving last, must not make it the job shown.
    The poll's answer is held in the browser (a route the test releases), so the order is certain.
    Before, the late answer took the panel back to the stopped job: the new API's live view never came."""
    from urllib.parse import urlsplit

    panel = _panel(page)
    panel.get_by_label("Candidate bundle", exact=True).select_option("")
    first = _start(page, "serve")
    url = _live_up(page).locator(".nbdeploy-live-url").inner_text()
    held: list = []

    def hold(route) -> None:
        if route.request.method == "GET":
            held.append(route)  # the job's status, answered only when the test says
        else:
            route.continue_()

    pattern = lambda u: urlsplit(u).path.endswith(f"/nbdeploy/jobs/{first}")  # noqa: E731
    page.route(pattern, hold)
    try:
        for _ in range(100):  # the next poll (every 0.7 s) waits on a held answer
            if held:
                break
            page.wait_for_timeout(100)
        assert held, "the panel did not poll the job"
        panel.locator('button[data-action="stop"]').click()
        page.wait_for_selector(f'.nbdeploy-job[data-id="{first}"][data-state="stopped"]')
        second = _start(page, "serve")
        for route in held:
            route.continue_()
    finally:
        page.unroute(pattern, hold)
    live = _live_up(page)
    page.wait_for_timeout(2_000)  # several polls after the late answer
    assert page.locator(".nbdeploy-job").get_attribute("data-id") == second
    assert live.locator(".nbdeploy-live-url").inner_text() != url
    panel.locator('button[data-action="stop"]').click()
    page.wait_for_selector(f'.nbdeploy-job[data-id="{second}"][data-state="stopped"]')
