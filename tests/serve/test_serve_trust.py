"""The server checks a bundle's seal before it reads any model bytes, and never unpickles
a format the manifest did not record."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from nbdeploy.serve import ServeError
from nbdeploy.serve.bundle import read_bundle
from nbdeploy.serve.model import load_model


class _Planted:
    """A pickle that runs code when it is loaded: it writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def _plant_pickle(bundle: Path, marker: Path) -> None:
    """What the attacker did: a cloudpickle file, and MLmodel edited to point at it."""
    (bundle / "model" / "evil.pkl").write_bytes(pickle.dumps(_Planted(marker)))
    mlmodel = yaml.safe_load((bundle / "model" / "MLmodel").read_text())
    mlmodel["flavors"]["sklearn"].update(pickled_model="evil.pkl", serialization_format="cloudpickle")
    (bundle / "model" / "MLmodel").write_text(yaml.safe_dump(mlmodel))


def _serve_check(bundle: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nbdeploy.serve", str(bundle), "--check", "--log-path", ""],
                          capture_output=True, text=True, timeout=300)


def test_a_sealed_bundle_loads(classifier_bundle: Path) -> None:
    bundle = read_bundle(classifier_bundle)
    assert bundle.loaders == frozenset({"skops"}) and bundle.unlisted == []
    assert load_model(bundle).flavor == "sklearn"


def test_a_planted_pickle_is_refused_before_it_runs(classifier_bundle: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    b = _copy(classifier_bundle, tmp_path / "b")
    _plant_pickle(b, marker)
    with pytest.raises(ServeError) as info:
        read_bundle(b)
    assert "model/MLmodel: changed" in info.value.message and "model/evil.pkl: not in the manifest" in info.value.message
    proc = _serve_check(b)  # the command the container runs, in a fresh process
    assert proc.returncode == 2 and "model/MLmodel: changed" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_a_planted_pickle_with_forged_checksums_is_still_never_unpickled(classifier_bundle: Path,
                                                                       tmp_path: Path) -> None:
    """The attacker also rewrote the checksums: the manifest still records skops, so the
    cloudpickle file the MLmodel names is not opened."""
    from conftest import seal_bundle

    marker = tmp_path / "pwned"
    b = _copy(classifier_bundle, tmp_path / "b")
    _plant_pickle(b, marker)
    seal_bundle(b, json.loads((b / "nbdeploy.json").read_text()))
    with pytest.raises(ServeError, match="MLmodel says it is cloudpickle, but the bundle's manifest records skops"):
        load_model(read_bundle(b))
    proc = _serve_check(b)
    assert proc.returncode == 2 and "refusing to load" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_changed_program_arrays_are_refused_not_served(classifier_bundle: Path, training_frame: Any,
                                                       tmp_path: Path) -> None:
    """Values re-saved into the compiled program's arrays: refused, naming the file."""
    from conftest import seal_bundle

    from nbdeploy.bundle.compiler import write_program

    b = _copy(classifier_bundle, tmp_path / "b")
    estimator = load_model(read_bundle(b)).predict.__self__
    assert write_program(estimator, b / "model", json.loads((b / "profile.json").read_text()))["compiled"]
    seal_bundle(b, json.loads((b / "nbdeploy.json").read_text()))
    assert load_model(read_bundle(b)).program is not None
    arrays = b / "model" / "nbdeploy_program" / "arrays.npz"
    with np.load(arrays) as npz:
        stored = {k: npz[k] for k in npz.files}
    key = next(k for k, v in stored.items() if v.dtype.kind == "f" and v.size)
    stored[key] = stored[key] + 1.0
    np.savez(arrays, **stored)
    with pytest.raises(ServeError, match="model/nbdeploy_program/arrays.npz: changed"):
        read_bundle(b)


@pytest.mark.parametrize("damage", ["flip a byte", "remove the model", "remove the manifest",
                                    "empty the file list", "add code beside the model"])
def test_every_kind_of_damage_is_refused_with_the_file_named(classifier_bundle: Path, tmp_path: Path,
                                                             damage: str) -> None:
    b = _copy(classifier_bundle, tmp_path / "b")
    model = b / "model" / "model.skops"
    manifest = b / "nbdeploy.json"
    if damage == "flip a byte":
        data = bytearray(model.read_bytes())
        data[len(data) // 2] ^= 0x01
        model.write_bytes(bytes(data))
        expected = "model/model.skops: changed"
    elif damage == "remove the model":
        model.unlink()
        expected = "model/model.skops: missing"
    elif damage == "remove the manifest":
        manifest.unlink()
        expected = "has no nbdeploy.json"
    elif damage == "empty the file list":
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "files": {}}))
        expected = "has no file list"
    else:
        (b / "model" / "sitecustomize.py").write_text("print('hello')\n")
        expected = "model/sitecustomize.py: not in the manifest"
    with pytest.raises(ServeError) as info:
        read_bundle(b)
    assert expected in info.value.message
    assert info.value.hint


def test_unlisted_files_outside_the_model_are_reported_but_served(classifier_bundle: Path, tmp_path: Path) -> None:
    """A request log left in the bundle folder is never loaded: named, not fatal."""
    b = _copy(classifier_bundle, tmp_path / "b")
    (b / "requests.jsonl").write_text("{}\n")
    (b / "model" / "__pycache__").mkdir()
    (b / "model" / "__pycache__" / "x.pyc").write_bytes(b"\0")  # a tool cache: not even reported
    bundle = read_bundle(b)
    assert bundle.unlisted == ["requests.jsonl"]
    assert load_model(bundle).flavor == "sklearn"


def test_a_bare_mlflow_model_folder_is_served_without_a_manifest(tripwire_model: Path) -> None:
    """Development: an MLflow model folder has no seal to check and keeps MLflow's formats."""
    bundle = read_bundle(tripwire_model)
    assert bundle.loaders is None
    assert load_model(bundle).flavor == "sklearn"
