"""What the server reads from a bundle folder: the MLmodel, the signature, the profile, the manifest.

Accepted layouts: a handoff bundle (``BUNDLE/model/MLmodel``, ``BUNDLE/profile.json``,
``BUNDLE/nbdeploy.json``) or, for development, a bare MLflow model folder (``DIR/MLmodel``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import seal
from .errors import ServeError

#: MLflow column types -> V2 (Open Inference Protocol) datatypes
V2_TYPES = {
    "boolean": "BOOL",
    "integer": "INT32",
    "long": "INT64",
    "float": "FP32",
    "double": "FP64",
    "string": "BYTES",
    "binary": "BYTES",
    "datetime": "BYTES",
}


def v2_output_names(signature_outputs: list[dict[str, Any]]) -> list[str]:
    """The names of the V2 outputs: the signature's column names, or "predict" for one unnamed output."""
    names = [str(o["name"]) for o in signature_outputs if o.get("name")]
    return names if len(names) > 1 else names or ["predict"]


@dataclass
class Column:
    name: str
    type: str  # MLflow type: boolean, integer, long, float, double, string, binary, datetime
    required: bool = True
    #: the categories, in order, of a column the model was trained on as pandas' ``category`` dtype
    #: (the manifest's ``model.categorical``): XGBoost and LightGBM read the codes, so the frame the
    #: model gets must hold that dtype with exactly these categories. None: the column's own type.
    categories: list[Any] | None = None


@dataclass
class Bundle:
    root: Path
    model_dir: Path
    mlmodel: dict[str, Any]
    name: str
    version: str
    summary: dict[str, Any] = field(default_factory=dict)
    #: input columns of the signature, or None when the model has no column signature
    columns: list[Column] | None = None
    #: tensor input spec ({"dtype", "shape"}) when the signature is tensor-based
    tensor_input: dict[str, Any] | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)
    profile: dict[str, Any] | None = None
    #: the loaders the manifest allows for the model (see :func:`.seal.allowed_loaders`);
    #: None for a bare MLflow model folder, which has no manifest
    loaders: frozenset[str] | None = None
    #: files outside the loaded folders that the manifest does not list (never loaded)
    unlisted: list[str] = field(default_factory=list)

    @property
    def flavors(self) -> dict[str, Any]:
        return self.mlmodel.get("flavors") or {}

    def signature_dict(self) -> dict[str, Any]:
        return {
            "inputs": [{"name": c.name, "type": c.type, "required": c.required} for c in self.columns]
            if self.columns is not None
            else ([{"type": "tensor", "tensor-spec": self.tensor_input}] if self.tensor_input else None),
            "outputs": self.outputs or None,
        }


def read_bundle(path: str | Path, *, check: bool = True) -> Bundle:
    """Read a bundle (or bare MLflow model) folder; raise ServeError when it is not one.

    A bundle's files are checked against its manifest first (``check``), before any of
    them is parsed: see :mod:`.seal`. ``check=False`` is for callers that read only the
    signature (the OpenAPI document, while the bundle is being assembled).
    """
    import yaml

    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise ServeError(f"{root} is not a folder", hint="pass a bundle folder or an MLflow model folder")
    if (root / "model" / "MLmodel").is_file():
        model_dir = root / "model"
    elif (root / "MLmodel").is_file():
        model_dir = root
    else:
        raise ServeError(
            f"no MLmodel file in {root} or {root / 'model'}: not a bundle",
            hint="build the bundle with `nbdeploy build NOTEBOOK` or point at an MLflow model folder",
        )
    manifest: dict[str, Any] = {}
    unlisted: list[str] = []
    if model_dir != root:
        if check:
            manifest, report = seal.check_seal(root)
            unlisted = report.unlisted
        else:
            manifest = _read_json(root / seal.MANIFEST) or {}
    try:
        mlmodel = yaml.load((model_dir / "MLmodel").read_text(), Loader=_loader()) or {}
    except yaml.YAMLError as e:
        raise ServeError(f"{model_dir / 'MLmodel'} is not valid YAML: {e}") from None
    bundle = Bundle(
        root=root,
        model_dir=model_dir,
        mlmodel=mlmodel if isinstance(mlmodel, dict) else {},
        name=str(manifest.get("name") or root.name),
        version=str(manifest.get("version") or "1"),
        summary=manifest.get("summary") or {},
        profile=_read_json(root / "profile.json"),
        loaders=seal.allowed_loaders(manifest) if model_dir != root else None,
        unlisted=unlisted,
    )
    _read_signature(bundle)
    model = manifest.get("model")
    categorical = model.get("categorical") if isinstance(model, dict) else None
    if isinstance(categorical, dict) and bundle.columns is not None:
        for col in bundle.columns:
            cats = categorical.get(col.name)
            col.categories = list(cats) if isinstance(cats, list) else None
    return bundle


def _loader() -> Any:
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ServeError(f"{path} is not valid JSON: {e}") from None
    return data if isinstance(data, dict) else None


def _read_signature(bundle: Bundle) -> None:
    sig = bundle.mlmodel.get("signature") or {}
    inputs = _json_field(sig.get("inputs"))
    bundle.outputs = _json_field(sig.get("outputs")) or []
    if not inputs:
        return
    if all(i.get("type") == "tensor" for i in inputs):
        if len(inputs) == 1:
            bundle.tensor_input = dict(inputs[0].get("tensor-spec") or {})
        return
    columns = []
    for i, spec in enumerate(inputs):
        name = spec.get("name")
        columns.append(
            Column(
                name=str(name) if name is not None else str(i),
                type=str(spec.get("type", "string")),
                required=bool(spec.get("required", True)),
            )
        )
    bundle.columns = columns


def _json_field(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value
