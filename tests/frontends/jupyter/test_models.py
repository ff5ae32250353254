"""The TypeScript models are generated from the Python ones and must be up to date."""

from __future__ import annotations

from pathlib import Path

from nbdeploy.frontends.jupyter.models import typescript

MODELS_TS = Path(__file__).resolve().parents[3] / "labextension" / "src" / "models.ts"


def test_models_ts_is_generated_from_python() -> None:
    assert MODELS_TS.read_text(encoding="utf-8") == typescript(), (
        "run: python -m nbdeploy.frontends.jupyter.models > labextension/src/models.ts")
