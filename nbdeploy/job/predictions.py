"""Predictions of the registered model on its example, saved by every job run.

A run's last injected cell calls :func:`save_predictions`: when the notebook named
a model with ``%deploy model VAR --example EXPR``, the model's predictions on that
example are written to ``<run_dir>/predictions.json``. :func:`compare_predictions`
compares two runs' predictions for ``reproduce``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

PREDICTIONS = "predictions.json"


def tail_cell(run_dir: Path) -> str:
    return (f"from nbdeploy.job.predictions import save_predictions as _nbd_sp\n"
            f"_nbd_sp({str(run_dir / PREDICTIONS)!r})\ndel _nbd_sp")


def _plain(values: Any) -> list:
    if hasattr(values, "tolist"):
        values = values.tolist()
    return list(values)


def save_predictions(path: str) -> None:
    """Run in the job kernel; never raises (a failure is written to the file instead)."""
    from nbdeploy.base.state import atomic_write_json
    from nbdeploy.capture.session import current_session

    s = current_session()
    if s is None:
        return
    model = s.model
    if not model or not model.get("example") or s.shell is None:
        return
    doc: dict[str, Any] = {"variable": model["variable"], "example": model["example"]}
    try:
        ns = s.shell.user_ns
        example = eval(model["example"], ns)  # noqa: S307 - the user's own expression
        doc["predictions"] = _plain(ns[model["variable"]].predict(example))
        doc["rows"] = len(doc["predictions"])
    except Exception as exc:
        doc["error"] = f"{type(exc).__name__}: {exc}"
    atomic_write_json(Path(path), doc)


def _flat(v: Any) -> list:
    out: list = []
    for x in v:
        out.extend(_flat(x) if isinstance(x, list) else [x])
    return out


def _bundle_golden(notebook: str | Path | None, example: str) -> tuple[dict | None, str]:
    """The golden predictions of the notebook's bundle, when they are on the same example."""
    if notebook is None:
        return None, ""
    try:
        from nbdeploy.base.state import default_bundle_dir, read_json

        path = default_bundle_dir(Path(notebook)) / "tests" / "golden.json"
        golden = read_json(path) if path.is_file() else None
    except Exception:  # no bundle module or an unreadable bundle: nothing to compare with
        return None, ""
    if not golden or golden.get("source") != example:
        return None, ""
    return {"predictions": golden.get("predictions", [])}, f"the bundle's golden predictions ({path})"


def compare_predictions(base_dir: str | None, run_dir: str, rtol: float, atol: float,
                        notebook: str | Path | None = None) -> Any:
    """A :class:`~.checks.Check` for the predictions, or None when no model is registered.

    The expected predictions are the baseline run's, else those of the notebook's
    bundle (``tests/golden.json``) when it was built on the same example.
    """
    from nbdeploy.base.state import read_json
    from nbdeploy.job.checks import DIFFERED, MATCHED, SKIPPED, Check

    new = Path(run_dir) / PREDICTIONS
    if not new.exists():
        return None
    after = read_json(new)
    name = f"{after['variable']} on {after['example']}"
    old = Path(base_dir) / PREDICTIONS if base_dir else None
    source = "the baseline run's predictions"
    if old is not None and old.exists():
        before = read_json(old)
    else:
        before, source = _bundle_golden(notebook, after["example"])
        if before is None:
            return Check("prediction", name, SKIPPED, detail="the baseline saved no predictions "
                         "and no bundle was built (compare against a job run with --run RUN_ID)")
    if "error" in after or "error" in before:
        return Check("prediction", name, DIFFERED, detail=after.get("error") or before.get("error"))
    a, b = _flat(before["predictions"]), _flat(after["predictions"])
    if len(a) != len(b):
        return Check("prediction", name, DIFFERED, len(a), len(b),
                     f"{len(a)} -> {len(b)} predicted values")
    diffs, worst = 0, 0.0
    for x, y in zip(a, b, strict=True):
        if isinstance(x, int | float) and isinstance(y, int | float):
            if not math.isclose(x, y, rel_tol=rtol, abs_tol=atol):
                diffs += 1
                worst = max(worst, abs(x - y))
        elif x != y:
            diffs += 1
    if diffs:
        return Check("prediction", name, DIFFERED, detail=f"{diffs} of {len(a)} predictions differ"
                     f" from {source} (largest absolute difference {worst:.6g})")
    return Check("prediction", name, MATCHED, detail=f"all {len(a)} predictions equal "
                 f"{source} (rtol {rtol:g})")
