"""Libraries installed from a folder on this machine (`pip install -e ../housekit`, `pip install
./scorekit`): no package index has them, so no lock can pin them. Their code is the notebook's
own: it ships with the model, and its imports are locked. Real installs by pip into a virtual
environment layered over this one (it sees this environment's packages through a .pth file)."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import nbformat
import pytest

HOUSEKIT = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "housekit"
        version = "0.3.0"
        dependencies = ["numpy", "scikit-learn", "tqdm"]

        [tool.setuptools.packages.find]
        where = ["src"]
        """,
    "src/housekit/__init__.py": '"""Housing feature steps (a library under development, installed editable)."""\n',
    # the corpus' feature step, plus an import only this file makes: the serving lock must still hold it
    "src/housekit/features.py": "import tqdm  # noqa: F401\n"
                                + (Path(__file__).parents[1] / "realworld" / "project" / "src" / "features.py").read_text(),
}
SCOREKIT = {
    "setup.py": """
        from setuptools import setup

        setup(name="scorekit", version="1.2.0", py_modules=["scorekit"])
        """,
    "scorekit.py": """
        from sklearn.base import BaseEstimator, TransformerMixin


        class Clip(BaseEstimator, TransformerMixin):
            \"\"\"Clips each column to the range it had in training.\"\"\"

            def fit(self, X, y=None):
                self.low_, self.high_ = X.min().to_numpy(), X.max().to_numpy()
                return self

            def transform(self, X):
                return X.clip(self.low_, self.high_, axis=1)
        """,
}
NOTEBOOK = [
    "import numpy as np\nimport pandas as pd\nfrom sklearn.linear_model import Ridge\nfrom sklearn.pipeline import Pipeline\n\n"
    "from housekit.features import AreaFeatures\nfrom scorekit import Clip",
    'df = pd.read_csv("houses.csv")\nX = df[["area", "rooms", "age"]]\ny = df["price"]',
    'model = Pipeline([("clip", Clip()), ("features", AreaFeatures()), ("reg", Ridge())]).fit(X, y)',
]


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text).lstrip())
    return root


@pytest.fixture(scope="module")
def layered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the layered environment's python, the analysis folder holding the notebook): housekit
    installed editable from a folder beside the analysis, scorekit installed (copied) from its folder."""
    root = tmp_path_factory.mktemp("local")
    env = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    here = sysconfig.get_paths()["purelib"]
    (Path(purelib) / "_nbdeploy_tests_layer.pth").write_text(f"import site; site.addsitedir({here!r})\n")
    for folder, editable in ((_write(root / "libs" / "housekit", HOUSEKIT), True),
                             (_write(root / "libs" / "scorekit", SCOREKIT), False)):
        done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                               "--no-deps", "--no-build-isolation", *(["-e"] if editable else []), str(folder)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    analysis = root / "analysis"
    analysis.mkdir()
    rng = __import__("numpy").random.default_rng(0)
    import pandas as pd

    df = pd.DataFrame({"area": rng.uniform(30, 200, 200), "rooms": rng.integers(1, 7, 200),
                       "age": rng.integers(0, 80, 200)})
    df["price"] = df.area * 3000 + df.rooms * 1000 - df.age * 200 + rng.normal(0, 5000, 200)
    df.to_csv(analysis / "houses.csv", index=False)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in NOTEBOOK])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, analysis / "train.ipynb")
    return python, analysis


def test_a_library_installed_from_a_folder_resolves_as_project_code(layered: tuple[Path, Path]) -> None:
    python, analysis = layered
    code = ("import json, sys; from pathlib import Path; from nbdeploy.capture.deps import resolve; "
            "print(json.dumps([resolve(m, Path(sys.argv[1])).__dict__ for m in sys.argv[2:]]))")
    done = subprocess.run([str(python), "-c", code, str(analysis), "housekit.features", "scorekit", "sklearn"],
                          capture_output=True, text=True, check=True)
    housekit, scorekit, sklearn = json.loads(done.stdout)
    libs = analysis.parent / "libs"
    assert (housekit["kind"], housekit["distribution"], housekit["version"]) == ("project", "housekit", "0.3.0")
    assert housekit["path"] == str(libs / "housekit" / "src" / "housekit" / "__init__.py")
    assert housekit["reason"] == f"editable from {libs / 'housekit'}"
    # not editable: its files were copied into the environment, and ship from there
    assert (scorekit["kind"], scorekit["distribution"], scorekit["version"]) == ("project", "scorekit", "1.2.0")
    assert Path(scorekit["path"]).name == "scorekit.py" and "site-packages" in scorekit["path"]
    assert scorekit["reason"] == f"installed from {libs / 'scorekit'}"
    assert sklearn["kind"] == "distribution"


@pytest.mark.slow
def test_a_notebook_using_local_libraries_builds_a_bundle_that_verifies(layered: tuple[Path, Path]) -> None:
    """Before, the lock pinned housekit==0.3.0 and scorekit==1.2.0: the bundle built, and verify
    failed with pip's "No matching distribution found for housekit==0.3.0"."""
    python, analysis = layered
    bundle = analysis / "train-bundle"
    built = subprocess.run([str(python), "-m", "nbdeploy", "build", "train.ipynb"], cwd=analysis,
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    manifest = json.loads((bundle / "nbdeploy.json").read_text())
    assert sorted(manifest["model"]["model_code"]) == ["housekit", "scorekit"]
    assert (bundle / "model" / "code" / "housekit" / "features.py").is_file()
    assert (bundle / "model" / "code" / "scorekit.py").is_file()
    for name in ("requirements.txt", "requirements.lock", "notebook-requirements.txt"):
        pins = [line.split("==")[0] for line in (bundle / name).read_text().splitlines() if "==" in line]
        assert "housekit" not in pins and "scorekit" not in pins, name
        assert "tqdm" in pins, name  # imported only by housekit's features.py
    # the notebook uses nothing of nbdeploy (the build's own cells do): its lock is its imports' alone
    notebook_lock = (bundle / "notebook-requirements.lock").read_text()
    assert "nbdeploy==" not in notebook_lock and "mlflow==" not in notebook_lock
    verified = subprocess.run([str(python), "-m", "nbdeploy", "verify", str(bundle)], cwd=analysis,
                              capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "tests: 5 passed" in verified.stdout
