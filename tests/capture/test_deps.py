"""Imports resolved to installed distributions, in this interpreter."""

from __future__ import annotations

import importlib.metadata as md
import zipfile
from pathlib import Path, PurePath

import pytest

from nbdeploy.capture.deps import _owner_by_file, canonical, resolve, scan_source
from nbdeploy.capture.lock import build_lock


@pytest.mark.parametrize(
    ("module", "distribution"),
    [("sklearn", "scikit-learn"), ("sklearn.pipeline", "scikit-learn"), ("yaml", "PyYAML"),
     ("dateutil", "python-dateutil"), ("google.protobuf", "protobuf"), ("PIL", "pillow")],
)
def test_import_name_maps_to_distribution_name(module: str, distribution: str, tmp_path: Path):
    res = resolve(module, tmp_path)
    assert res.kind == "distribution"
    assert canonical(res.distribution) == canonical(distribution)
    assert res.version == md.version(distribution)


def test_stdlib_is_not_a_dependency(tmp_path: Path):
    assert resolve("os.path", tmp_path).kind == "stdlib"
    assert resolve("json", tmp_path).kind == "stdlib"


def test_missing_module_is_unresolved_with_its_name(tmp_path: Path):
    res = resolve("surely_not_installed_pkg", tmp_path)
    assert res.kind == "unresolved"
    assert "surely_not_installed_pkg" in res.reason
    assert "not installed" in res.reason


def test_local_module_is_project_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "myhelpers.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    res = resolve("myhelpers", tmp_path)
    assert res.kind == "project"
    assert Path(res.path) == tmp_path / "myhelpers.py"


def test_scan_reads_magics_pip_lines_run_and_dynamic_imports():
    scan = scan_source(
        "%pip install 'requests>=2' -q\n"
        "!pip install --upgrade pyyaml\n"
        "%run prep.py\n"
        "import numpy as np, json\n"
        "from sklearn.pipeline import Pipeline\n"
        "from . import sibling\n"
        "import importlib\n"
        "m = importlib.import_module('scipy.stats')\n"
    )
    assert scan.pip_installs == ["requests>=2", "pyyaml"]
    assert scan_source("!pip install -q xgboost \\\n    'lightgbm>=4' \\\n    shap\nx = 1").pip_installs == [
        "xgboost", "lightgbm>=4", "shap"]  # continued lines, joined as IPython joins them
    assert scan.run_files == ["prep.py"]
    mods = {(s.module, s.found_by) for s in scan.imports}
    assert ("numpy", "import") in mods and ("sklearn.pipeline", "import") in mods
    assert ("scipy.stats", "dynamic import") in mods
    assert not any(m == "sibling" for m, _ in mods)  # relative imports are the project's own


def test_an_extension_the_notebook_loads_is_an_import_but_not_ipythons_own():
    scan = scan_source("%load_ext watermark\n%reload_ext nbdeploy\n%load_ext autoreload\n%autoreload 2\n"
                       "%load_ext storemagic\n", cell=3)
    assert [(s.module, s.found_by, s.cell) for s in scan.imports] == [
        ("watermark", "%load_ext watermark", 3), ("nbdeploy", "%reload_ext nbdeploy", 3)]


def test_a_cell_the_job_adds_is_not_the_notebooks(tmp_path: Path):
    """A job's first cell loads nbdeploy and imports from it; the notebook itself may use nothing of
    nbdeploy: the capture skips the job's cells, so its requirements do not name the tool."""
    from nbdeploy.base.notebook import JOB_CELL_MARK
    from nbdeploy.capture.session import CaptureSession

    session = CaptureSession(tmp_path / "nb.ipynb", mode="job", state_dir=tmp_path / "state")
    session.scan(f"{JOB_CELL_MARK}\n%load_ext nbdeploy\nfrom nbdeploy.capture.session import current_session",
                 cell=1)
    session.scan("import numpy as np", cell=2)
    assert [s.module for s in session.sites] == ["numpy"]


def test_lock_is_transitive_and_pinned_to_installed_versions():
    lock = build_lock({"scikit-learn": set()})
    names = {canonical(p.name): p for p in lock.packages.values()}
    for dep in ("scikit-learn", "numpy", "scipy", "joblib", "threadpoolctl"):
        assert dep in names, dep
        assert names[dep].version == md.version(dep)
    assert "scikit-learn" in names["numpy"].required_by
    text = lock.to_text()
    assert f"numpy=={md.version('numpy')}" in text
    assert not lock.missing


def test_lock_follows_requested_extras_only():
    plain = build_lock({"dask": set()})
    with_extra = build_lock({"dask": {"distributed"}})
    assert "distributed" not in plain.packages
    assert "distributed" in with_extra.packages


def test_editable_install_maps_to_its_distribution():
    # nbdeploy is installed editable here (and in CI): its files live outside site-packages
    repo = Path(__file__).resolve().parents[2]
    res = resolve("nbdeploy", repo)
    assert res.kind == "distribution"
    assert res.distribution == "nbdeploy" and res.version == md.version("nbdeploy")


def test_a_helper_inside_an_editable_project_is_still_project_code():
    # example_notebooks/ lies inside the nbdeploy checkout, which is installed editable
    examples = Path(__file__).resolve().parents[2] / "example_notebooks"
    import sys

    sys.path.insert(0, str(examples))
    try:
        res = resolve("features", examples)
    finally:
        sys.path.remove(str(examples))
    assert res.kind == "project" and Path(res.path) == examples / "features.py"


def test_nbdeploy_itself_is_never_unresolved_nor_project_code(tmp_path: Path) -> None:
    """A notebook beside a checkout of nbdeploy (or with nbdeploy installed any way) loads the
    extension: capture names the tool with its version, never as something to resolve or ship."""
    from nbdeploy._version import __version__

    (tmp_path / "nbdeploy").mkdir()
    (tmp_path / "nbdeploy" / "__init__.py").write_text("")  # a folder of that name in the project
    for module in ("nbdeploy", "nbdeploy.frontends.magics"):
        res = resolve(module, tmp_path)
        assert (res.kind, res.distribution, res.version) == ("distribution", "nbdeploy", __version__)


def test_code_above_the_notebook_is_project_code_as_cookiecutter_lays_it_out(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch):
    """notebooks/ beside src/: the notebook runs `sys.path.append('..')` and `from src.features
    import ...`; and a folder holding the project's marker makes its code the notebook's own."""
    import sys

    from nbdeploy.capture.deps import module_root, project_scope

    root = tmp_path / "proj"
    (root / "notebooks").mkdir(parents=True)
    (root / "src").mkdir()
    (root / "src" / "__init__.py").write_text("")
    (root / "src" / "nbd_cc_features.py").write_text("X = 1\n")
    (root / "lib").mkdir()
    (root / "lib" / "nbd_cc_helpers.py").write_text("Y = 2\n")
    notebooks = root / "notebooks"
    assert project_scope(notebooks) == notebooks.resolve()  # no marker anywhere up to three levels
    monkeypatch.syspath_prepend(str(root))  # sys.path.append('..')
    monkeypatch.delitem(sys.modules, "src", raising=False)
    res = resolve("src.nbd_cc_features", notebooks)
    assert res.kind == "project" and res.path == str((root / "src" / "__init__.py").resolve())
    assert module_root(res.path) == root.resolve()
    # a sibling folder put on sys.path ('../lib') is the notebook's only inside a marked project
    monkeypatch.syspath_prepend(str(root / "lib"))
    assert resolve("nbd_cc_helpers", notebooks).kind == "unresolved"
    (root / "pyproject.toml").write_text("[project]\nname = 'proj'\n")
    assert project_scope(notebooks) == root.resolve()
    assert resolve("nbd_cc_helpers", notebooks).kind == "project"
    assert module_root(resolve("nbd_cc_helpers", notebooks).path) == (root / "lib").resolve()


def test_a_distribution_in_a_zip_file_owns_its_module_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Which of a namespace package's distributions owns a module's file: a distribution in a zip
    file on sys.path locates its files as ``zipfile.Path`` (``zipp.Path``), which ``pathlib.Path()`` refuses (a
    TypeError out of ``resolve``); the file's text is what a module imported from the zip has
    as ``__file__``."""
    zipped = tmp_path / "parts.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("nbdzns/part/__init__.py", "X = 1\n")
        z.writestr("nbdzpart-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: nbdzpart\nVersion: 1.0\n")
        z.writestr("nbdzpart-1.0.dist-info/RECORD", "nbdzns/part/__init__.py,,\nnbdzpart-1.0.dist-info/METADATA,,\n")
    monkeypatch.syspath_prepend(str(zipped))
    # zipfile.Path, or zipp.Path where importlib_metadata (the backport) stands in: not a pathlib path
    located = md.distribution("nbdzpart").locate_file("nbdzns/part/__init__.py")
    assert not isinstance(located, PurePath) and str(located) == f"{zipped}/nbdzns/part/__init__.py"
    assert _owner_by_file(["pyyaml", "nbdzpart"], f"{zipped}/nbdzns/part/__init__.py") == "nbdzpart"
    assert _owner_by_file(["nbdzpart"], str(tmp_path / "elsewhere.py")) is None
