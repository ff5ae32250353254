"""The models a build can choose between: the candidates kept from a build that found several.

One real build of a notebook that fits two models and logs a score for each; it stops at
"several models" and keeps its run. :func:`kept_candidates` lists them with their scores, and
says whether the kept run still matches the notebook's code (saving outputs does not matter).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from nbdeploy.base.errors import ModelError

pytestmark = pytest.mark.slow

CELLS = (
    'alpha = 0.5\nlabel = "first"\nscale = 2\nnoisy = False',  # tagged `parameters`
    'import pandas as pd\nfrom sklearn.linear_model import Ridge\nfrom sklearn.tree import DecisionTreeRegressor\n'
    'df = pd.read_csv("data.csv")\nX = df[["a", "b", "c"]]\ny = df["t"] * scale',
    "linear = Ridge(alpha=alpha).fit(X, y)\ntree = DecisionTreeRegressor(max_depth=3, random_state=0).fit(X, y)",
    'import nbdeploy\nnbdeploy.log_metric("linear_r2", float(linear.score(X, y)))\n'
    'nbdeploy.log_metric("tree_r2", float(tree.score(X, y)))\nprint("label is", label, "scale is", scale)',
)


def two_models_project(folder: Path) -> Path:
    """``folder/two_models.ipynb`` (parameters alpha, label, scale, noisy; models linear and tree,
    scores linear_r2 and tree_r2), its ``data.csv`` and a ``grid.yaml`` over ``scale``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    n = 120
    df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.uniform(0, 10, size=n), "c": rng.integers(0, 5, size=n)})
    df["t"] = 2 * df["a"] - 0.5 * df["b"] + df["c"] + rng.normal(scale=0.1, size=n)
    df.to_csv(folder / "data.csv", index=False)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nb.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(nb, folder / "two_models.ipynb")
    (folder / "grid.yaml").write_text("grid:\n  scale: [1, 3]\n")
    return folder / "two_models.ipynb"


def test_kept_candidates_with_their_scores(tmp_path: Path) -> None:
    from nbdeploy.bundle import build_bundle
    from nbdeploy.bundle.candidates import kept_candidates

    nb = two_models_project(tmp_path / "proj")
    assert kept_candidates(nb).candidates == []
    with pytest.raises(ModelError, match="several fitted models"):
        build_bundle(nb, output=tmp_path / "b")
    found = kept_candidates(nb)
    assert found.current and [c.variable for c in found.candidates] == ["linear", "tree"]
    linear, tree = found.candidates
    assert linear.model_class.endswith("Ridge") and tree.model_class.endswith("DecisionTreeRegressor")
    assert linear.score.startswith("linear_r2 = 0.") and tree.score.startswith("tree_r2 = 0.")
    assert "--model VAR` reuses its run" in found.text()

    doc = nbformat.read(nb, as_version=4)  # what JupyterLab's save changes: outputs, metadata
    doc.cells[3].outputs = [nbformat.v4.new_output("stream", name="stdout", text="label is first\n")]
    doc.metadata["language_info"] = {"name": "python"}
    nbformat.write(doc, nb)
    assert kept_candidates(nb).current
    doc.cells[2].source += "\n# a changed line of code"
    nbformat.write(doc, nb)
    assert not kept_candidates(nb).current


def test_a_score_is_a_metric_that_names_the_variable() -> None:
    from nbdeploy.bundle.candidates import _score

    metrics = {"rf_auc": {"value": 0.91234}, "auc_lr": {"value": 0.8}, "rfx_auc": {"value": 0.1}, "loss": 3}
    assert _score(metrics, "rf") == "rf_auc = 0.9123"
    assert _score(metrics, "lr") == "auc_lr = 0.8"
    assert _score(metrics, "tree") is None
