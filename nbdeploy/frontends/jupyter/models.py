"""The REST models of the server extension: defined once here, in Python.

The TypeScript side (``labextension/src/models.ts``) is generated from these
dataclasses by ``python -m nbdeploy.frontends.jupyter.models > labextension/src/models.ts``;
a test fails when the generated file is out of date, so the two never drift.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from nbdeploy.bundle.candidates import Candidate, Candidates
from nbdeploy.bundle.live import CanaryStatus, LiveStatus, ShadowStatus
from nbdeploy.bundle.readiness import Detail, Item, Readiness
from nbdeploy.job.params import ParamSpec

JobKind = Literal["run", "reproduce", "build", "verify", "serve", "batch"]
JobState = Literal["running", "succeeded", "failed", "stopped"]
JOB_KINDS: tuple[str, ...] = typing.get_args(JobKind)


@dataclass
class JobRequest:
    """Body of ``POST /nbdeploy/jobs``. ``path`` is a notebook (run, reproduce, build, batch) or a
    bundle folder (verify, serve), relative to the server's root directory. Each field is the
    CLI option of the same name; values are checked before the job starts."""

    kind: JobKind
    path: str
    parameters: dict[str, str] = field(default_factory=dict)  # run / build: -p NAME VALUE
    output: str | None = None  # build: bundle folder (default: NOTEBOOK-bundle beside it)
    force: bool = False  # build: replace an existing bundle folder
    container: bool = False  # verify: in the bundle's container image instead of a venv
    model: str | None = None  # build: --model VARIABLE (one of the kept run's candidates)
    workers: int | None = None  # serve: worker processes; batch: local Dask workers
    grid: str | None = None  # batch: the grid YAML file, relative to the root
    shadow: str | None = None  # serve: a candidate bundle folder that shadows every request
    canary: str | None = None  # serve: a candidate bundle folder that answers a share of requests
    canary_percent: float | None = None  # serve: the canary's share (default 10)


@dataclass
class JobResult:
    ok: bool
    summary: str
    bundle: str | None = None  # root-relative bundle folder (build, verify, serve)
    readme: str | None = None  # root-relative README.md of the bundle
    url: str | None = None  # serve: the API's base URL
    curl: str | None = None  # serve: a sample request
    run_id: str | None = None  # run / reproduce


@dataclass
class Job:
    id: str
    kind: JobKind
    path: str
    state: JobState
    command: list[str]
    started: str
    finished: str | None = None
    returncode: int | None = None
    progress: float | None = None  # 0..1 when the command reports steps, else None
    step: str = ""  # the last progress line
    result: JobResult | None = None
    error: str | None = None


@dataclass
class LogChunk:
    job: str
    offset: int
    next_offset: int
    text: str
    complete: bool  # the job ended and this chunk reaches the end of its log


@dataclass
class BundleInfo:
    path: str  # root-relative
    name: str | None
    version: str
    created: str | None
    notebook: str | None  # root-relative notebook it was built from, when inside the root
    verified: bool | None  # None: never verified


@dataclass
class VersionRow:
    """One registered version of a notebook's model (``GET /nbdeploy/releases``)."""

    version: str
    aliases: list[str]
    created: str
    notebook: str
    notebook_sha256: str
    parameters: dict[str, Any]
    metrics: dict[str, Any]
    verified: bool | None  # None: no verify on record for this version's bundle
    verify_summary: str | None


@dataclass
class AliasMove:
    """One promote or rollback, from the registry's history."""

    time: str
    alias: str
    action: Literal["promote", "rollback"]
    from_version: str | None
    to_version: str
    user: str
    forced: bool


@dataclass
class Releases:
    """The versions of a notebook's registered model and who moved its aliases when."""

    name: str
    registry: str
    versions: list[VersionRow]
    history: list[AliasMove]


@dataclass
class ReleaseRequest:
    """Body of ``POST /nbdeploy/releases``: promote a version, or roll an alias back."""

    path: str  # the notebook, relative to the server's root
    action: Literal["promote", "rollback"]
    version: str | None = None  # promote: the version number
    alias: str = "champion"
    force: bool = False  # promote without a passing verify (recorded in the history)


@dataclass
class Parameters:
    """The parameters cell of a notebook (``GET /nbdeploy/parameters``): what Run and Build can set."""

    notebook: str
    cell: int | None  # index of the parameters cell; None: the notebook has none
    params: list[ParamSpec]


@dataclass
class PerformanceVersion:
    """One version's live metric against training (the API's ``GET /performance``)."""

    version: str
    served_as: list[str]  # live, canary, shadow
    kind: str  # classification (accuracy) | regression (mae, rmse)
    labelled_requests: int
    labelled_rows: int
    live: dict[str, float | None]  # metric -> value on the labelled rows (None before any)
    training: dict[str, float]  # metric -> what the notebook recorded at training
    change: dict[str, float]  # metric -> live minus training
    mismatched_requests: int = 0  # labels whose row count differs from the answer's
    unscorable_rows: int = 0  # answers with several outputs or probabilities: nothing to compare


@dataclass
class Performance:
    """``GET /nbdeploy/jobs/ID/performance``: the labels a serve job's API was sent back, joined to its answers."""

    source: str  # the API's URL
    labels: int
    joined: int  # labels whose request the API logged
    unjoined: int
    versions: list[PerformanceVersion]

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Performance:
        """The typed report of the core's document (fields the panel does not show are left out)."""
        names = {f.name for f in dataclasses.fields(PerformanceVersion)}
        return cls(str(doc.get("source") or ""), int(doc.get("labels") or 0), int(doc.get("joined") or 0),
                   int(doc.get("unjoined") or 0),
                   [PerformanceVersion(**{k: v[k] for k in names if k in v}) for v in doc.get("versions") or []])


@dataclass
class ErrorBody:
    error: str
    message: str
    hint: str | None = None


MODELS: tuple[type, ...] = (Detail, Item, Readiness, JobRequest, JobResult, Job, LogChunk,
                            BundleInfo, VersionRow, AliasMove, Releases, ReleaseRequest, ParamSpec, Parameters,
                            Candidate, Candidates, CanaryStatus, ShadowStatus, LiveStatus, PerformanceVersion, Performance,
                            ErrorBody)

REQUESTS = (JobRequest, ReleaseRequest)  # bodies the client sends: fields with defaults may be left out


def to_json(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    if isinstance(obj, list):
        return [to_json(o) for o in obj]
    return obj


# -- TypeScript generation ------------------------------------------------------
def _ts_type(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is str:
        return "string"
    if tp in (int, float):
        return "number"
    if tp is bool:
        return "boolean"
    if tp is type(None):
        return "null"
    if tp is Any:
        return "unknown"
    if origin is Literal:
        return " | ".join(f"'{a}'" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_ts_type(a) for a in args)
    if origin is list:
        inner = _ts_type(args[0])
        return f"{inner}[]" if inner.isidentifier() else f"({inner})[]"
    if origin is dict or tp is dict:
        return f"Record<string, {_ts_type(args[1]) if args else 'unknown'}>"
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return tp.__name__
    raise TypeError(f"no TypeScript type for {tp!r}")


def typescript() -> str:
    out = ["// Generated by `python -m nbdeploy.frontends.jupyter.models > labextension/src/models.ts`.",
           "// Do not edit: the REST models are defined once, in nbdeploy/frontends/jupyter/models.py.", ""]
    aliases = {"JobKind": JobKind, "JobState": JobState, "Status": Detail.__annotations__["status"]}
    ns: dict[str, Any] = {}
    for module in {m.__module__ for m in MODELS} - {__name__}:
        ns.update(vars(sys.modules[module]))
    ns.update(vars(sys.modules[__name__]))
    for name, tp in aliases.items():
        tp = eval(tp, ns) if isinstance(tp, str) else tp
        out += [f"export type {name} = {_ts_type(tp)};", ""]
    for model in MODELS:
        hints = typing.get_type_hints(model, ns)
        out.append(f"export interface {model.__name__} {{")
        for f in dataclasses.fields(model):
            ts = _ts_type(hints[f.name])
            for alias, atp in aliases.items():
                atp = eval(atp, ns) if isinstance(atp, str) else atp
                ts = ts.replace(_ts_type(atp), alias)
            has_default = (f.default is not dataclasses.MISSING
                           or f.default_factory is not dataclasses.MISSING)
            opt = "?" if model in REQUESTS and has_default else ""
            out.append(f"  {f.name}{opt}: {ts};")
        out += ["}", ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(typescript())
