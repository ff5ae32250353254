"""The real-world corpus: notebooks in the shapes public tutorials and starter repositories
take, each built as a user would (``build_bundle``, no flags) and held to its expected
outcome in :mod:`.expected`: "verified", or the exact one-line message that names the cell,
variable or file and says what to add.

Every build runs its notebook in a fresh kernel (papermill), so each notebook is a real
end-to-end case. A verified bundle is then proved to answer as the notebook did with
``serve_and_test``: the bundle's own tests (golden predictions, schema errors) against its
API started with this interpreter. The full ``verify_bundle`` (a fresh venv from the
bundle's lock, then the same tests) adds 5-15 s per bundle with a warm uv cache and much
more with a cold one or pip, and what it proves beyond ``serve_and_test`` -- the lock is
complete -- depends on how the model is saved and served, not on how the notebook read its
data. So it runs on one notebook per serving path only (:data:`.expected.FULL_VERIFY`: a scikit-learn
pipeline through skops and its compiled program, a native LightGBM Booster, a statsmodels
model through MLflow's pyfunc wrapper: that one found pyarrow missing from a lock), keeping
the corpus within its CI budget: the whole module took 5 min on the 2-core machine.

Data files are generated (seeded, small) by :mod:`.data` into a temporary project laid out
as ``data/`` beside ``notebooks/``.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from nbdeploy.base.errors import CellExecutionError, NbdeployError
from nbdeploy.bundle import build_bundle, verify_bundle

from ..bundle.conftest import serve_and_test
from .data import write_data
from .expected import CORPUS, FULL_VERIFY, VERIFIED

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
NOTEBOOKS = HERE / "notebooks"
TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    write_data(root)
    shutil.copytree(NOTEBOOKS, root / "notebooks")
    shutil.copytree(HERE / "project", root, dirs_exist_ok=True)  # src/ beside notebooks/ (cookiecutter)
    return root


def test_every_notebook_has_an_expected_outcome() -> None:
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(CORPUS)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_notebook(name: str, project: Path) -> None:
    case = CORPUS[name]
    nb = project / "notebooks" / f"{name}.ipynb"
    started = time.perf_counter()
    try:
        if case.outcome != VERIFIED:
            with pytest.raises(NbdeployError) as info:
                build_bundle(nb, output=project / "bundles" / name)
            err = info.value
            assert err.message == case.outcome
            assert "\n" not in str(err)
            if isinstance(err, CellExecutionError):  # the traceback is kept for the user
                assert err.hint and "last-failed-build.ipynb" in err.hint
            assert not (project / "bundles" / name).exists()
            return
        result = build_bundle(nb, output=project / "bundles" / name)
        manifest = json.loads((result.bundle / "nbdeploy.json").read_text())
        # what the build says of the model's inputs: computed in the notebook, or one column
        note = " ".join(n for n in (manifest["model"].get("derived_note"), manifest["model"].get("input_note")) if n)
        if case.note:
            assert case.note in note, note
            assert case.note in result.text()
            assert case.note in (result.bundle / "README.md").read_text()
        else:
            assert not note, note
        ok, out = serve_and_test(result.bundle)
        assert ok, out
        if name in FULL_VERIFY:
            report = verify_bundle(result.bundle)
            assert report.ok, report.text()
    finally:
        TIMES[name] = time.perf_counter() - started


def test_several_models_build_with_model_flag(project: Path) -> None:
    """The message says `--model VAR`; doing so right after builds from the run that stopped
    (its candidates were exported then), without running the notebook again."""
    nb = project / "notebooks" / "several_models.ipynb"
    kept = project / "notebooks" / ".nbdeploy" / "several_models" / "last-build-run"
    if not kept.exists():  # this test run alone: make the build that stops at several models
        with pytest.raises(NbdeployError):
            build_bundle(nb, output=project / "bundles" / "several_models")
    events: list = []
    result = build_bundle(nb, output=project / "bundles" / "ridge", model="ridge", progress=events.append)
    assert result.manifest["model"]["class"].endswith("Ridge")
    assert any(e.outcome == "note" and "reusing the last build's run" in e.title for e in events)
    assert not kept.exists()  # used once: the next build runs the notebook again
    executed = (result.bundle / "notebook" / "several_models.executed.ipynb").read_text()
    assert "several fitted models" not in executed
    ok, out = serve_and_test(result.bundle)
    assert ok, out


def test_example_flag_on_a_model_fitted_on_an_inline_array(project: Path) -> None:
    """The message says `--example EXPR`; doing so builds, without editing the notebook."""
    result = build_bundle(project / "notebooks" / "numpy_no_match.ipynb", output=project / "bundles" / "inline",
                          example="np.c_[rng.normal(size=(5, 2)), rng.uniform(size=5)]")
    golden = json.loads((result.bundle / "tests" / "golden.json").read_text())
    assert golden["columns"] == ["x0", "x1", "x2"] and len(golden["data"]) == 5
    ok, out = serve_and_test(result.bundle)
    assert ok, out


def test_zz_corpus_time() -> None:
    """Print each notebook's time (build, serve, tests) and the total: the corpus' CI cost."""
    if TIMES:
        rows = "\n".join(f"  {n:32s} {t:6.1f} s" for n, t in sorted(TIMES.items()))
        print(f"\ncorpus: {len(TIMES)} notebooks in {sum(TIMES.values()):.0f} s\n{rows}")


def test_several_models_are_named_before_the_run() -> None:
    """The build's first step notes the fitted variables the source shows, so a user can stop
    and pass --model before the whole run; no corpus notebook with one model gets the note."""
    import nbformat

    from nbdeploy.bundle.build import fitted_in_source

    several = {n for n in CORPUS
               if len(fitted_in_source(nbformat.read(NOTEBOOKS / f"{n}.ipynb", 4).cells)) > 1}
    assert several == {"several_models"}
    assert fitted_in_source(nbformat.read(NOTEBOOKS / "several_models.ipynb", 4).cells) == ["linear", "ridge", "tree"]


def test_a_text_model_takes_its_column_and_its_drift_is_measured_on_predictions(project: Path,
                                                                                tmp_path: Path) -> None:
    """The tutorial's sentiment classifier (fitted on a Series of reviews): the API takes rows with a
    `review` column and answers as the notebook's model; the reviews are profiled as free text, which
    no drift measure counts (every review is new), so the drift report compares the predictions."""
    import urllib.request

    from nbdeploy.bundle.live import live_status
    from nbdeploy.serve import ServeConfig, launch
    from nbdeploy.serve.drift_log import log_report

    from .data import reviews

    bundle = project / "bundles" / "text_tfidf_series"
    if not bundle.exists():  # this test alone
        build_bundle(project / "notebooks" / "text_tfidf_series.ipynb", output=bundle)
    manifest = json.loads((bundle / "nbdeploy.json").read_text())
    assert manifest["model"]["inputs"] == ["review"]
    assert json.loads((bundle / "profile.json").read_text())["columns"]["review"]["kind"] == "text"
    assert "free text, " in (bundle / "README.md").read_text()
    texts = reviews(seed=7)["review"].tolist()[:150]
    log = tmp_path / "requests.jsonl"
    handle = launch(bundle, ServeConfig(port=0, log_path=str(log)), timeout=180)
    try:
        answers = []
        for i in range(0, len(texts), 50):
            body = json.dumps({"dataframe_split": {"columns": ["review"], "data": [[t] for t in texts[i:i + 50]]}})
            req = urllib.request.Request(f"{handle.url}/invocations", data=body.encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as r:
                answers += json.loads(r.read())["predictions"]
        with urllib.request.urlopen(f"{handle.url}/drift", timeout=60) as r:
            drift = json.loads(r.read())
        live = live_status(handle.url)  # what the panel's live view and `nbdeploy status` show
    finally:
        assert handle.stop() == 0
    # the words decide: every review of this data that says "great product" is positive
    assert len(answers) == 150 and {a for t, a in zip(texts, answers, strict=True) if "great product" in t} == {
        "positive"}
    assert drift["columns"] == [] and [c["field"] for c in drift["not_measured"]] == ["review"]
    assert live.not_measured == ["review"] and "not measured: review (free text)" in live.text()
    report = log_report(bundle, log)
    assert [f["field"] for f in report["features"]] == ["prediction"] and report["rows"] == 150
    assert any(n.startswith("not measured: review (free text") for n in report["notes"])


def test_a_model_in_a_dict_is_built_by_its_item(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The message names `models['forest']`; the CLI takes it (quoted as the message quotes it) and
    builds the forest from the run that stopped, not the loop's last `model` (the boosting)."""
    from nbdeploy.frontends.cli import main

    nb = project / "notebooks" / "models_in_a_dict.ipynb"
    kept = project / "notebooks" / ".nbdeploy" / "models_in_a_dict" / "last-build-run"
    if not kept.exists():  # this test alone: make the build that stops at several models
        with pytest.raises(NbdeployError):
            build_bundle(nb, output=project / "bundles" / "models_in_a_dict")
    out = project / "bundles" / "forest"
    assert main(["build", str(nb), "--model", "models['forest']", "-o", str(out)]) == 0
    assert "reusing the last build's run" in capsys.readouterr().out
    manifest = json.loads((out / "nbdeploy.json").read_text())
    assert manifest["model"]["variable"] == "models['forest']"
    assert manifest["model"]["class"].endswith("RandomForestClassifier")
    ok, text = serve_and_test(out)
    assert ok, text
    # nothing but a name or an item by a literal key is taken: no expression of the user's is run
    assert main(["build", str(nb), "--model", "models[__import__('os').getpid()]", "-o", str(out)]) == 2
