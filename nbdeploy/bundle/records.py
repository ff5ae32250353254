"""What the bundle stages hand each other: the export, the manifest and the README's facts.

They travel as JSON (``export.json`` is written inside the notebook's kernel and read by
the build; ``nbdeploy.json`` is read by verify, serve, the panel and the registry), so they
are ``TypedDict``s: a type checker holds every key a stage reads to what the other wrote.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

Flavor = Literal["sklearn", "xgboost", "lightgbm", "pyfunc"]


class ProgramOutcome(TypedDict, total=False):
    """Whether the model was compiled to a numpy program (see :mod:`.compiler`), and why not."""

    compiled: bool
    reason: str
    rows: int
    steps: list[str]


class TrainingData(TypedDict):
    path: str | None
    relative_path: str | None
    hash: str | None
    rows: int | None


#: ``class`` (the model's dotted class name) is a Python keyword: declared in the functional form
_ModelClass = TypedDict("_ModelClass", {"class": str})


class _ExportRequired(_ModelClass):
    variable: str
    flavor: Flavor
    inputs: list[str]
    dtypes: dict[str, str]
    example_source: str
    example: dict[str, Any]  # pandas "split" orient: columns, data
    predictions: Any
    profile: dict[str, Any] | None
    program: ProgramOutcome
    training_data: TrainingData | None
    serving_direct: list[str]
    serving_lock: list[dict[str, Any]]
    serving_lock_missing: list[dict[str, Any]]
    model_code: list[str]
    model_code_paths: list[str]
    model_data: dict[str, Any]
    serialization: str
    trusted_types: list[str]
    requirements: list[str]
    seconds: float
    timings: dict[str, float]


class Export(_ExportRequired, total=False):
    """``export.json``: the model as the notebook's kernel saved it, for :mod:`.assemble`
    (``python`` is added by the build)."""

    python: str
    #: input columns no data file the notebook read has (computed in the notebook, not in the model)
    derived_inputs: list[str]
    #: the note the build wrote about them (cells that compute them, how to move them into the model)
    derived_note: str
    #: what was saved: the variable, or its part (``search.best_estimator_``)
    shipped: str
    #: how the model's input differs from what the notebook fitted it on (one column: see export.one_column_model)
    input_note: str | None
    #: inputs given to the model as pandas' category dtype: their categories, in order
    categorical: dict[str, list[Any]]


class ModelFacts(TypedDict, total=False):
    variable: str
    flavor: Flavor
    serialization: str
    trusted_types: list[str]
    inputs: list[str]
    example_source: str
    model_code: list[str]
    shipped: str
    derived_inputs: list[str]
    derived_note: str | None
    input_note: str | None
    categorical: dict[str, list[Any]]


class SourceRef(TypedDict):
    notebook: str
    path: str
    sha256: str | None
    executed: str


class Manifest(TypedDict, total=False):
    """``nbdeploy.json``: the bundle's identity, provenance and the checksum of every file."""

    format: str
    name: str
    version: str
    created: str
    summary: dict[str, Any]
    model: ModelFacts
    registry: dict[str, Any]
    source: SourceRef
    parameters: dict[str, Any]
    metrics: dict[str, Any]
    git: dict[str, Any] | None
    training_data: TrainingData | None
    python: str
    nbdeploy_version: str
    build: dict[str, Any]
    #: with ``--wheelhouse``: the folder, the Python its wheels are for, what came from the index
    wheelhouse: dict[str, Any]
    files: dict[str, str]


class ReadmeContext(_ModelClass):
    """Everything the bundle's README says (:func:`.readme.render`)."""

    name: str
    version: str
    description: str
    variable: str
    notebook: str
    notebook_sha256: str
    created: str
    flavor: Flavor
    serialization: str
    registry: dict[str, Any]
    inputs: list[dict[str, str]]
    profile: dict[str, Any] | None
    training_path: str | None
    outputs_text: str
    golden: dict[str, Any]
    v2_types: dict[str, str]
    parameters: dict[str, Any]
    metrics: dict[str, Any]
    python: str
    lineage: list[dict[str, Any]]
    git: str | None
    program: ProgramOutcome | None
    derived_note: str | None
    input_note: str | None
