"""Bad input: each is a clear error, and no half-written bundle is ever left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbdeploy.base.errors import BundleError, CellExecutionError, ModelError
from nbdeploy.bundle import build_bundle

from .conftest import READ, make_notebook

pytestmark = pytest.mark.slow

FIT2 = ("from sklearn.linear_model import LinearRegression, Ridge\n"
        "m1 = LinearRegression().fit(X, df['t'])\n"
        "m2 = Ridge().fit(X, df['t'])")


def _nothing_left(project: Path, target: Path, before: set[str] | None = None) -> None:
    """No bundle and no partial folder was left; ``before``: what the shared project held already
    (other modules build their bundles in the same session-scoped folder)."""
    assert not target.exists()
    assert not [p.name for p in project.iterdir() if p.name not in (before or set())
                and (".partial-" in p.name or p.name.endswith("-bundle"))]


def _build_fails(fixture_dir: Path, name: str, *cells: str, exc=ModelError, **kw):
    nb = make_notebook(fixture_dir / f"{name}.ipynb", *cells)
    target = fixture_dir / f"{name}-bundle"
    before = {p.name for p in fixture_dir.iterdir()}
    with pytest.raises(exc) as info:
        build_bundle(nb, output=target, **kw)
    _nothing_left(fixture_dir, target, before)
    return info.value


def test_no_model_at_all(fixture_dir):
    err = _build_fails(fixture_dir, "nomodel", READ)
    assert "names no model and holds no fitted estimator" in err.message
    assert "%deploy model" in str(err)


def test_several_models_are_listed_with_how_to_choose(fixture_dir):
    err = _build_fails(fixture_dir, "ambiguous", READ, FIT2)
    assert "m1 (LinearRegression)" in err.message and "m2 (Ridge)" in err.message
    assert "--model" in str(err)


def test_unknown_model_variable(fixture_dir):
    err = _build_fails(fixture_dir, "novar", READ, FIT2, model="m3")
    assert "no variable 'm3'" in err.message


def test_unsupported_object(fixture_dir):
    err = _build_fails(fixture_dir, "unsupported", READ, "thing = {'a': 1}", "%deploy model thing")
    assert "not a model" in err.message and "predict()" in err.message


def test_example_columns_differ_from_training(fixture_dir):
    err = _build_fails(fixture_dir, "badexample", READ, FIT2,
                       "%deploy model m1 --example X.head(3).rename(columns=str.upper)")
    assert "example's columns differ" in err.message
    assert "missing ['a', 'b', 'c']" in err.message and "unexpected ['A', 'B', 'C']" in err.message


def test_notebook_failing_mid_run(fixture_dir):
    err = _build_fails(fixture_dir, "fails", READ, "1 / 0", FIT2, exc=CellExecutionError)
    assert err.cell_index == 1 and err.ename == "ZeroDivisionError"
    assert err.output_path and Path(err.output_path).exists()  # kept outside the bundle


def test_existing_target_refused_before_running(fixture_dir):
    nb = make_notebook(fixture_dir / "exists.ipynb", READ, FIT2, "%deploy model m1")
    target = fixture_dir / "exists-bundle"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(BundleError, match="already exists") as info:
        build_bundle(nb, output=target)
    assert "--force" in str(info.value)
    assert (target / "keep.txt").read_text() == "mine"
    result = build_bundle(nb, output=target, force=True)
    assert result.bundle == target and not (target / "keep.txt").exists()
    assert (target / "nbdeploy.json").is_file()
    assert not [p for p in fixture_dir.iterdir() if ".old-" in p.name or ".partial-" in p.name]
