"""Generated contents for every file nbdeploy reads that a user can hand it or damage.

The property, for each reader: the file parses, or nbdeploy's own error is raised (the core's
``NbdeployError``; the serving runtime's ``ServingError`` where the runtime reads it alone)
with a message that names the file. Never another exception type, never a traceback.

The contents come from Hypothesis: bytes that are not UTF-8, text that is not YAML or JSON,
and documents of every JSON shape (mappings with the expected keys holding values of the
wrong types, lists, scalars). Derandomized: the same inputs every run.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nbdeploy.base.errors import NbdeployError
from nbdeploy.serve.errors import ServingError

pytestmark = pytest.mark.fuzz

FUZZ = settings(max_examples=300, derandomize=True, database=None, deadline=None,
                suppress_health_check=list(HealthCheck))

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)


def documents(keys: list[str]) -> st.SearchStrategy[Any]:
    """Any JSON value, and mappings that use (some of) ``keys`` with values of any type."""
    known = st.dictionaries(st.sampled_from(keys), values, max_size=len(keys))
    return values | known | st.builds(lambda a, b: {**a, **b}, known, st.dictionaries(st.text(max_size=8), values,
                                                                                       max_size=3))


def contents(keys: list[str], dump: Callable[[Any], str]) -> st.SearchStrategy[bytes]:
    """A file's bytes: a dumped document, arbitrary text, or arbitrary bytes."""
    return (documents(keys).map(lambda d: dump(d).encode()) | st.text().map(str.encode)
            | st.binary(max_size=64))


def _json(doc: Any) -> str:
    return json.dumps(doc)


def _yaml(doc: Any) -> str:
    return yaml.safe_dump(doc)


def _folder(tmp_path: Path) -> Path:
    """A new folder for one example (the test's tmp_path is shared by all of its examples)."""
    return Path(tempfile.mkdtemp(dir=tmp_path))


def _refused_clearly(exc: BaseException, path: Path) -> None:
    """nbdeploy's own error, naming the file (its path, or its folder for a bundle)."""
    assert isinstance(exc, NbdeployError | ServingError), f"{type(exc).__name__}: {exc}"
    message = getattr(exc, "message", str(exc))
    assert str(path) in message or str(path.parent) in message, message


# -- nbdeploy run -p FILE ----------------------------------------------------------
@FUZZ
@given(data=contents(["alpha", "epochs", "name"], _yaml))
@example(data=b"\x80")  # found: UnicodeDecodeError
def test_parameters_file(tmp_path: Path, data: bytes) -> None:
    from nbdeploy.job.params import read_params_file

    path = _folder(tmp_path) / "params.yaml"
    path.write_bytes(data)
    try:
        doc = read_params_file(path)
    except Exception as e:
        _refused_clearly(e, path)
    else:
        assert isinstance(doc, dict) and all(isinstance(k, str) for k in doc)


# -- nbdeploy batch NB GRID ----------------------------------------------------------
@FUZZ
@given(data=contents(["grid", "runs", "alpha"], _yaml))
@example(data=b"runs: true\n")  # found: TypeError 'bool' object is not iterable
@example(data=b"[]")  # found: "the grid is empty", without the file's name
def test_grid_file(tmp_path: Path, data: bytes) -> None:
    from nbdeploy.job.batch import load_grid

    path = _folder(tmp_path) / "grid.yaml"
    path.write_bytes(data)
    try:
        sets = load_grid(path)
    except Exception as e:
        _refused_clearly(e, path)
    else:
        assert sets and all(isinstance(s, dict) and all(isinstance(k, str) for k in s) for s in sets)


# -- a bundle's manifest (verify, serve) --------------------------------------------
MANIFEST_KEYS = ["files", "name", "version", "summary", "model", "format", "source"]


@FUZZ
@given(data=contents(MANIFEST_KEYS, _json))
def test_manifest_read_by_verify(tmp_path: Path, data: bytes) -> None:
    from nbdeploy.bundle.manifest import check_files, read_manifest

    root = _folder(tmp_path)
    (root / "nbdeploy.json").write_bytes(data)
    try:
        check_files(root, read_manifest(root))
    except Exception as e:
        _refused_clearly(e, root / "nbdeploy.json")


@FUZZ
@given(data=contents(MANIFEST_KEYS, _json))
def test_manifest_read_by_the_server(tmp_path: Path, data: bytes) -> None:
    from nbdeploy.serve.seal import check_seal

    root = _folder(tmp_path)
    (root / "nbdeploy.json").write_bytes(data)
    try:
        check_seal(root)
    except Exception as e:
        _refused_clearly(e, root / "nbdeploy.json")


@FUZZ
@given(doc=st.dictionaries(st.sampled_from(MANIFEST_KEYS[1:]), values, max_size=6))
def test_sealed_manifest_with_fields_of_any_type(tmp_path: Path, doc: dict[str, Any]) -> None:
    """Its files match (so the seal holds), its other fields are anything: the bundle is read
    with a name and a version that are text, or refused naming the manifest."""
    from nbdeploy.serve.bundle import read_bundle
    from nbdeploy.serve.seal import checksums

    root = _folder(tmp_path)
    (root / "model").mkdir()
    (root / "model" / "MLmodel").write_text("flavors: {}\n")
    (root / "nbdeploy.json").write_text(json.dumps({**doc, "files": checksums(root)}))
    try:
        bundle = read_bundle(root)
    except Exception as e:
        _refused_clearly(e, root / "nbdeploy.json")
    else:
        assert isinstance(bundle.name, str) and isinstance(bundle.version, str)


# -- the request log (nbdeploy compare LOG) -------------------------------------------
LOG_KEYS = ["ts", "id", "endpoint", "status", "inputs", "outputs", "primary", "shadow", "version", "error",
            "latency_ms"]
record = documents(LOG_KEYS) | st.fixed_dictionaries(
    {"endpoint": st.sampled_from(["shadow", "invocations", "v2_infer"]), "id": values},
    optional={k: values for k in LOG_KEYS if k not in ("endpoint", "id")})


@FUZZ
@given(lines=st.lists(record.map(_json) | st.text(max_size=40), min_size=1, max_size=6))
@example(lines=["5", '{"endpoint": ["shadow"]}'])  # found: AttributeError, unhashable list
@example(lines=['{"endpoint": "shadow", "primary": [1], "outputs": [1], "latency_ms": "x"}'])
def test_request_log_read_by_compare(tmp_path: Path, lines: list[str]) -> None:
    from nbdeploy.bundle.servers import compare

    path = _folder(tmp_path) / "requests.jsonl"
    path.write_text("\n".join(lines) + "\n")
    try:
        report = compare(path)
    except Exception as e:
        _refused_clearly(e, path)
    else:
        report.text()


# -- run records (nbdeploy runs, reproduce, the panel) -----------------------------------
RUN_KEYS = ["run_id", "notebook", "run_dir", "status", "parameters", "given", "started", "duration", "output",
            "copied_to", "metrics", "lineage", "error", "kind", "batch_id", "reproduces", "kernel"]


@FUZZ
@given(data=contents(RUN_KEYS, _json))
@example(data=b"{}")  # found: TypeError, missing run_id, notebook, run_dir and status
@example(data=b'{"run_id": "a", "notebook": "n", "run_dir": "d", "status": "completed", "metrics": {"m": "x"}}')
def test_run_record(tmp_path: Path, data: bytes) -> None:
    from nbdeploy.job.run import load_run

    run_dir = _folder(tmp_path)
    (run_dir / "run.json").write_bytes(data)
    try:
        rec = load_run(run_dir)
    except Exception as e:
        _refused_clearly(e, run_dir / "run.json")
    else:  # what `nbdeploy runs` prints and the panel sends
        rec.summary()
        json.dumps(rec.to_dict(), default=str)


@FUZZ
@given(data=contents(["notebook", "packages", "python", "lineage", "environment"], _json))
@example(data=b"\x80")  # found: UnicodeDecodeError
def test_capture_record(tmp_path: Path, data: bytes) -> None:
    from nbdeploy.base.state import NotebookState

    nb = _folder(tmp_path) / "nb.ipynb"
    state = NotebookState.for_notebook(nb)
    state.root.mkdir(parents=True)
    state.capture_path.write_bytes(data)
    try:
        state.read_capture()
    except Exception as e:
        _refused_clearly(e, state.capture_path)
