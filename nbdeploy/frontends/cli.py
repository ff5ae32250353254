"""The ``nbdeploy`` command: a thin front end over the core.

Each subcommand parses its arguments, calls one core function and prints the
result. Every :class:`NbdeployError` is printed as one line on stderr
(``nbdeploy: error: ...``) with exit code 2; a failing notebook cell exits 1;
``nbdeploy drift --fail-on`` exits 3 when a feature drifted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from nbdeploy._version import __version__
from nbdeploy.base.errors import CellExecutionError, NbdeployError
from nbdeploy.base.progress import Finished, Progress, ProgressEvent, event_writer, fan_out
from nbdeploy.frontends import cli_release
from nbdeploy.frontends.cli_release import bundle_folder, project_arg

Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {}


def command(name: str, help: str, configure: Callable[[argparse.ArgumentParser], None]):
    def deco(fn: Handler) -> Handler:
        COMMANDS[name] = (help, configure, fn)
        return fn
    return deco


def _say(args: argparse.Namespace) -> Callable[[str], None]:
    """Output lines of a tool nbdeploy drives (a container engine): stdout, or stderr when
    stdout carries one JSON document (--json)."""
    out = sys.stderr if getattr(args, "json", False) else sys.stdout
    return lambda line: print(line, file=out, flush=True)


def _progress(args: argparse.Namespace) -> Progress:
    """The core's progress events: their text on the terminal, or with --json one JSON object a
    line on stderr (stdout carries the result); also as JSON lines to ``$NBDEPLOY_EVENTS`` when a
    caller (the Jupyter server extension) set it."""
    if getattr(args, "json", False):
        def show(event: ProgressEvent) -> None:
            print(json.dumps(event.to_dict()), file=sys.stderr, flush=True)
    else:
        def show(event: ProgressEvent) -> None:
            print(event.text(), flush=True)
    return fan_out(event_writer(), show)  # the event first: a reader woken by the line finds it


def _finished(ok: bool, summary: str, result: Any = None, error: NbdeployError | None = None) -> None:
    """The last event for a caller that follows ``$NBDEPLOY_EVENTS``: the typed outcome."""
    write = event_writer()
    if write is not None:
        write(Finished(ok, summary, error.to_dict() if error is not None else None,
                       result.to_dict() if result is not None and hasattr(result, "to_dict") else None))


def _show(args: argparse.Namespace, result: Any) -> None:
    """A result as one JSON document (--json) or as its text."""
    text = result.text()
    _finished(True, text.strip().splitlines()[-1] if text.strip() else "", result)
    if getattr(args, "json", False):
        _emit_json(result.to_dict())
    else:
        print(text)


def _emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


# -- capture ---------------------------------------------------------------
def _capture_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", help="the .ipynb file")
    p.add_argument("--json", action="store_true", help="print the capture record as JSON")
    p.add_argument("--timeout", type=float, default=None, help="per-cell timeout in seconds")
    _kernel_arg(p)


def _kernel_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kernel", metavar="NAME", help="the kernel spec to run the notebook in (default: "
                   "the one its metadata names, else the Python nbdeploy runs in)")


@command("capture", "execute a notebook headlessly with capture on and write its record",
         _capture_args)
def _capture(args: argparse.Namespace) -> int:
    from nbdeploy.frontends.render import status_view
    from nbdeploy.job.capture_run import capture_notebook

    result = capture_notebook(args.notebook, timeout=args.timeout, kernel=args.kernel,
                              progress=_progress(args))
    if result.error is not None:
        raise result.error
    if args.json:
        _emit_json(result.record)
    else:
        print(status_view(result.record, str(result.state_dir)).text())
    return 0


def _status_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", help="the .ipynb file")
    p.add_argument("--json", action="store_true", help="print the capture record as JSON")


@command("status", "show the last capture record of a notebook (no kernel needed)", _status_args)
def _status(args: argparse.Namespace) -> int:
    from nbdeploy.base.notebook import load_notebook
    from nbdeploy.base.state import NotebookState
    from nbdeploy.frontends.render import status_view

    load_notebook(args.notebook)
    st = NotebookState.for_notebook(args.notebook)
    record = st.read_capture()
    if args.json:
        _emit_json(record)
    else:
        print(status_view(record, str(st.root)).text())
    return 0


# -- bundle ----------------------------------------------------------------
def _build_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", help="the .ipynb file")
    p.add_argument("--model", help="the model variable (default: %%deploy model, or the one fitted estimator)")
    p.add_argument("--example", metavar="EXPR",
                   help="an expression giving example input rows, e.g. 'X_test.head(10)' (default: "
                        "%%deploy model --example, or rows of the notebook's training frames)")
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                   help="a notebook parameter for the run (repeatable)")
    p.add_argument("-o", "--output", help="bundle folder (default: NOTEBOOK-bundle beside the notebook)")
    p.add_argument("--force", action="store_true", help="replace an existing bundle folder")
    p.add_argument("--timeout", type=float, default=None, help="per-cell timeout in seconds")
    _kernel_arg(p)
    _wheelhouse_args(p, "pack the lock's wheels into wheelhouse/ (local sources first): the image "
                        "then builds with no package index")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _wheelhouse_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--wheelhouse", action="store_true", help=what)
    p.add_argument("--no-index", action="store_true",
                   help="with --wheelhouse: only local sources (pip's find-links, file:// indexes, "
                        "its cache, the installed packages), never the package index")


@command("build", "build the handoff bundle from a clean papermill run of the notebook", _build_args)
def _build(args: argparse.Namespace) -> int:
    from nbdeploy.bundle import build_bundle

    result = build_bundle(args.notebook, output=args.output, model=args.model, example=args.example,
                          cli_params=[tuple(p) for p in args.param], force=args.force,
                          timeout=args.timeout, kernel=args.kernel, wheelhouse=args.wheelhouse,
                          wheelhouse_index=not args.no_index, progress=_progress(args))
    _show(args, result)
    return 0


def _verify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="the bundle folder, or a registered version: models:/NAME/3")
    project_arg(p)
    p.add_argument("--pip", action="store_true", help="create the environment with pip, not uv")
    p.add_argument("--no-wheelhouse", action="store_true",
                   help="install the lock from the package index even when the bundle has a wheelhouse "
                        "(by default the lock comes from the wheelhouse alone, as the image installs it)")
    p.add_argument("--keep-env", action="store_true", help="keep the virtual environment (path printed)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--container", action="store_true",
                   help="instead: build (or reuse) the bundle's image, run it on 127.0.0.1 and run "
                        "the bundle's tests against the container")
    p.add_argument("--rebuild", action="store_true", help="with --container: always rebuild")
    p.add_argument("--health-timeout", type=float, default=120.0, metavar="SECONDS",
                   help="with --container: how long the container may take to become ready")
    from nbdeploy.container.options import add_arguments

    add_arguments(p)


@command("verify", "check a bundle: checksums, a lock-only environment, its tests against its API",
         _verify_args)
def _verify(args: argparse.Namespace) -> int:
    if args.container:
        return _verify_container(args)
    from nbdeploy.bundle import verify_bundle

    report = verify_bundle(bundle_folder(args), installer="pip" if args.pip else "auto",
                           keep_env=args.keep_env, wheelhouse=not args.no_wheelhouse,
                           progress=_progress(args))
    _finished(report.ok, report.failure or "verified", report)
    if args.json:
        _emit_json(report.to_dict())
    else:
        print(report.text(checks=False))
    return 0 if report.ok else 1


# -- container ---------------------------------------------------------------
def _image_args(p: argparse.ArgumentParser) -> None:
    from nbdeploy.container.options import add_arguments

    p.add_argument("bundle", help="the bundle folder (its Dockerfile is built)")
    add_arguments(p)
    p.add_argument("--save", metavar="FILE", help="also write the image as an OCI archive")
    p.add_argument("--reuse", action="store_true",
                   help="keep an existing image built from identical bundle files")
    _wheelhouse_args(p, "first pack the lock's wheels into the bundle's wheelhouse/ and seal it "
                        "again, so the build needs no package index (add --build-flag=--network=none "
                        "to prove it)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


@command("image", "build the bundle's container image (docker, podman or buildah)", _image_args)
def _image(args: argparse.Namespace) -> int:
    from nbdeploy.container.image import build_image
    from nbdeploy.container.options import from_args

    if args.wheelhouse:
        from nbdeploy.bundle.wheelhouse import add_wheelhouse

        packed = add_wheelhouse(args.bundle, index=not args.no_index, progress=_progress(args))
        print(packed.text(), file=sys.stderr if args.json else sys.stdout)
    result = build_image(args.bundle, from_args(args), reuse=args.reuse, save=args.save,
                         on_line=_say(args))
    if args.json:
        _emit_json({**result.__dict__, "saved": str(result.saved or "")})
    else:
        print(result.text())
    return 0


def _base_image_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tag", help="image tag (default: localhost/nbdeploy-python:X.Y-SUITE)")
    p.add_argument("--engine", choices=["docker", "podman", "buildah"], help="container engine")
    p.add_argument("--mirror", help="Debian mirror URL (default: the one apt is configured with)")
    p.add_argument("--suite", help="Debian release (default: this host's, e.g. bookworm)")


@command("base-image", "build a Python base image from the host's Debian mirror (no registry "
         "needed)", _base_image_args)
def _base_image(args: argparse.Namespace) -> int:
    from nbdeploy.container.base_image import build_base_image
    from nbdeploy.container.engine import detect_engine

    result = build_base_image(args.tag, engine=detect_engine(args.engine), mirror=args.mirror,
                              suite=args.suite, on_line=_say(args))
    print(result.text())
    print(f"use it with: nbdeploy image BUNDLE --base {result.tag}")
    return 0


def _container_setup_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--check", action="store_true", help="only report what differs")
    p.add_argument("--runtime", default="runc", help="OCI runtime (default: runc)")
    p.add_argument("--cgroup-manager", default="cgroupfs", choices=["cgroupfs", "systemd"])
    p.add_argument("--path", default="/etc/containers/containers.conf",
                   help="the containers.conf to check or write")


@command("container-setup", "check or write the podman/buildah host settings "
         "(runtime, cgroup manager, ulimits)", _container_setup_args)
def _container_setup(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nbdeploy.container.config import HostSettings, apply_host_config, check_host_config

    settings = HostSettings(runtime=args.runtime, cgroup_manager=args.cgroup_manager)
    fn = check_host_config if args.check else apply_host_config
    report = fn(settings, Path(args.path))
    print(report.text())
    return 0 if report.ok or report.written else 1


def _k8s_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="the bundle folder")
    p.add_argument("--image", help="image reference for the manifests (default: NAME:VERSION)")
    p.add_argument("--min-replicas", type=int, default=2)
    p.add_argument("--max-replicas", type=int, default=10)
    p.add_argument("--cpu-target", type=int, default=70, metavar="PERCENT",
                   help="HPA target CPU utilization")
    p.add_argument("--min-available", default="1", help="PodDisruptionBudget minAvailable")
    p.add_argument("--kserve", action="store_true", help="also write k8s/kserve/inferenceservice.yaml")
    p.add_argument("--canary", type=int, metavar="PERCENT",
                   help="KServe canaryTrafficPercent (implies --kserve)")


@command("k8s", "rewrite the bundle's k8s/ manifests (image, HPA, PDB, optional KServe canary)",
         _k8s_args)
def _k8s(args: argparse.Namespace) -> int:
    from nbdeploy.bundle.k8s import K8sOptions, write_bundle_k8s

    min_available = int(args.min_available) if args.min_available.isdigit() else args.min_available
    opts = K8sOptions(replicas=args.min_replicas, min_replicas=args.min_replicas,
                      max_replicas=args.max_replicas, cpu_target_percent=args.cpu_target,
                      min_available=min_available, canary_traffic_percent=args.canary)
    for path in write_bundle_k8s(args.bundle, image=args.image, opts=opts,
                                 kserve=True if args.kserve else None):
        print(f"wrote {path}")
    print(f"sealed {args.bundle}/nbdeploy.json again with the new checksums (the bundle still verifies)")
    return 0


def _verify_container(args: argparse.Namespace) -> int:
    from nbdeploy.container.options import from_args
    from nbdeploy.container.verify import verify_container

    result = verify_container(bundle_folder(args), from_args(args), rebuild=args.rebuild,
                              health_timeout=args.health_timeout,
                              on_line=_say(args))
    _show(args, result)
    return 0 if result.passed else 1


# -- job ---------------------------------------------------------------------
def _param_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   default=[], help="a parameter value, converted to the default's type (repeatable)")
    p.add_argument("-f", "--params-file", metavar="PARAMS.yaml", help="a YAML file of parameter values")


def _job_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=float, default=None, help="per-cell timeout in seconds")
    p.add_argument("--tracking", choices=["background", "sync", "off"], default="background",
                   help="log to MLflow from a detached process (default), before exiting, or not")
    _kernel_arg(p)
    p.add_argument("--json", action="store_true", help="print the result as one JSON document")


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", help="the .ipynb file")
    _param_args(p)
    p.add_argument("-o", "--output", metavar="OUT.ipynb", help="also write the executed notebook here")
    _job_common(p)


@command("run", "run a copy of a notebook in a fresh kernel with parameters, and record the run",
         _run_args)
def _run(args: argparse.Namespace) -> int:
    from nbdeploy.job.run import run_notebook

    rec = run_notebook(args.notebook, cli=[tuple(p) for p in args.param],
                       params_file=args.params_file, output=args.output, timeout=args.timeout,
                       tracking=args.tracking, progress=_progress(args), kernel=args.kernel)
    _finished(rec.ok, rec.summary(), rec)
    if args.json:
        _emit_json(rec.to_dict())
        return 0 if rec.ok else 1
    print(rec.summary(), flush=True)
    err = rec.cell_error()
    if err is not None:
        raise err
    return 0 if rec.ok else 1


def _reproduce_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", help="the .ipynb file")
    p.add_argument("--run", dest="run_id", help="compare with this run (default: the capture "
                   "record, else the last completed run)")
    p.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance for metrics")
    p.add_argument("--atol", type=float, default=1e-9, help="absolute tolerance for metrics")
    _job_common(p)


@command("reproduce", "re-run a notebook from a clean kernel and compare data hashes and metrics "
         "with the captured run", _reproduce_args)
def _reproduce(args: argparse.Namespace) -> int:
    from nbdeploy.job.reproduce import reproduce

    report = reproduce(args.notebook, run_id=args.run_id, rtol=args.rtol, atol=args.atol,
                       timeout=args.timeout, tracking=args.tracking, progress=_progress(args),
                       kernel=args.kernel)
    text = report.text()
    _finished(report.ok, text.strip().splitlines()[0] if text.strip() else "", report)
    if args.json:
        _emit_json(report.to_dict())
    else:
        print(text, flush=True)
    return 0 if report.ok else 1


def _batch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", help="the .ipynb file")
    p.add_argument("--grid", required=True, metavar="GRID.yaml",
                   help="grid: {name: [values]} (cartesian product) and/or runs: [{...}]")
    p.add_argument("--workers", type=int, default=2, help="local Dask workers (default 2)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="use this Dask scheduler")
    p.add_argument("--force", action="store_true", help="re-run parameter sets that already succeeded")
    p.add_argument("--name", help="batch name (default: the grid file's name)")
    _job_common(p)


@command("batch", "run a notebook over a grid of parameters in parallel on Dask", _batch_args)
def _batch(args: argparse.Namespace) -> int:
    from nbdeploy.frontends import progress
    from nbdeploy.job.batch import run_batch

    stream = sys.stderr if args.json else sys.stdout
    tick = progress.tqdm_bar() if sys.stderr.isatty() else progress.lines(stream)
    result = run_batch(args.notebook, args.grid, workers=args.workers, scheduler=args.scheduler,
                       force=args.force, name=args.name, timeout=args.timeout,
                       tracking=args.tracking, progress=tick, kernel=args.kernel,
                       say=lambda line: print(line, file=stream, flush=True))
    text = result.view().text()
    _finished(not result.failed, text.strip().splitlines()[-1] if text.strip() else "", result)
    if args.json:
        _emit_json(result.to_dict())
    else:
        print(text, flush=True)
    return 0 if not result.failed else 1


def _runs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", help="the .ipynb file")
    p.add_argument("--json", action="store_true", help="print the runs as JSON")


@command("runs", "list the recorded runs of a notebook (no kernel needed)", _runs_args)
def _runs(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nbdeploy.frontends.render import runs_view
    from nbdeploy.job.run import damaged_runs, list_runs

    runs = list_runs(args.notebook)
    damaged = damaged_runs(args.notebook)
    if damaged:
        print(f"nbdeploy: {len(damaged)} run record(s) could not be read and are not listed: "
              f"{', '.join(str(d) for d in damaged)} (move them aside with `nbdeploy doctor --repair`; "
              "the other runs are kept)",
              file=sys.stderr)
    if args.json:
        _emit_json([r.to_dict() for r in runs])
    else:
        print(runs_view(Path(args.notebook).name, runs).text())
    return 0


def _doctor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", nargs="?", default=".", help="a notebook or its folder (default: .)")
    p.add_argument("--repair", action="store_true",
                   help="move the damaged records into .nbdeploy/damaged/TIME/ (nothing is deleted)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


@command("doctor", "find damaged state records and MLflow store beside a notebook; --repair moves them aside",
         _doctor_args)
def _doctor(args: argparse.Namespace) -> int:
    from nbdeploy.job.doctor import examine

    report = examine(args.path, repair=args.repair)
    _show(args, report)
    return 0 if report.ok else 1


# -- serve -------------------------------------------------------------------
def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="the bundle folder, or a registered version: models:/NAME@champion, "
                                  "models:/NAME/3")
    project_arg(p)
    p.add_argument("--host", default=None, help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8080)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default 1)")
    p.add_argument("--max-batch-size", type=int, default=None, help="rows per predict call")
    p.add_argument("--max-wait-ms", type=float, default=None, help="micro-batching wait")
    p.add_argument("--log-path", default=None, help="JSON-lines request log ('' for none)")
    p.add_argument("--log-keep", default=None,
                   help="delete rotated (gzipped) request-log files older than this: 7d (default), 12h, 0 = never")
    p.add_argument("--shadow", metavar="BUNDLE", default=None,
                   help="a candidate that gets every request's inputs after the answer; see GET /shadow")
    p.add_argument("--canary", metavar="BUNDLE", default=None, help="a candidate that answers a share of requests")
    p.add_argument("--canary-percent", type=float, default=None, help="the canary's share (default 10)")
    p.add_argument("--canary-key-header", metavar="HEADER", default=None,
                   help="a request header whose value keeps a client on one version")


@command("serve", "serve a bundle's API (MLflow scoring protocol and Open Inference Protocol V2)",
         _serve_args)
def _serve(args: argparse.Namespace) -> int:
    from nbdeploy.base.errors import ServeError
    from nbdeploy.bundle.servers import serve_forever
    from nbdeploy.serve import ServeConfig
    from nbdeploy.serve.errors import ServingError

    try:
        config = ServeConfig.from_env(host=args.host, port=args.port, workers=args.workers,
                                      max_batch_size=args.max_batch_size,
                                      max_wait_ms=args.max_wait_ms, log_path=args.log_path, log_keep=args.log_keep,
                                      shadow=args.shadow, canary=args.canary, canary_percent=args.canary_percent,
                                      canary_key_header=args.canary_key_header)
    except ServingError as e:  # a setting out of range, from a flag or an NBDEPLOY_* variable
        raise ServeError(f"cannot serve {args.bundle}: {getattr(e, 'message', e)}",
                         hint=getattr(e, "hint", None) or "nbdeploy serve --help") from None
    serve_forever(bundle_folder(args), config)
    return 0


def _compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("log", nargs="?", help="a request log with shadow records (nbdeploy serve A --shadow B)")
    p.add_argument("--replay", nargs=2, metavar=("REQUESTS.jsonl", "CANDIDATE"),
                   help="send the logged requests to the CANDIDATE bundle offline and compare its answers")
    p.add_argument("--json", action="store_true", help="the report as JSON")


@command("compare", "agreement of a candidate with the live model: a shadow's log, or a replay of logged requests",
         _compare_args)
def _compare(args: argparse.Namespace) -> int:
    from nbdeploy.bundle.servers import compare

    if (args.log is None) == (args.replay is None):
        raise NbdeployError("give a LOG with shadow records, or --replay REQUESTS.jsonl CANDIDATE",
                            hint="nbdeploy compare --help")
    _show(args, compare(args.log) if args.replay is None else compare(*args.replay))
    return 0


def _performance_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a request log (nbdeploy serve --log-path) or a running API's URL")
    p.add_argument("--feedback", metavar="FILE", default=None,
                   help="labels kept beside the log: JSON lines or CSV of request_id,label")
    p.add_argument("--json", action="store_true", help="the report as JSON")


@command("performance", "live accuracy (or MAE/RMSE) per version from the labels sent back, against training",
         _performance_args)
def _performance(args: argparse.Namespace) -> int:
    from nbdeploy.bundle.performance import performance

    _show(args, performance(args.source, args.feedback, os.environ.get("NBDEPLOY_API_TOKEN")))
    return 0


def _score_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="the bundle folder")
    p.add_argument("input", help="a CSV or Parquet file, a folder or glob of them, or an fsspec URL (s3://...)")
    p.add_argument("-o", "--output", required=True, help="the output file (.csv or .parquet; rejects and "
                   "lineage are written beside it)")
    p.add_argument("--workers", type=int, default=None, help="a compiled program: threads in this process "
                   "(default: one per CPU); another model: local Dask worker processes (default: one per CPU for "
                   "2 M rows or more, else this process; 1: this process)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="use this Dask scheduler (`local`: a Dask "
                   "LocalCluster of --workers processes, even for a compiled program)")
    p.add_argument("--chunk-rows", type=int, default=None, help="rows read and scored at a time (default 200000)")
    p.add_argument("--id", dest="id_column", metavar="COLUMN", help="keep only this column beside the predictions")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


@command("score", "score CSV/Parquet files with a bundle's model and its API's validation (batch, on Dask)",
         _score_args)
def _score(args: argparse.Namespace) -> int:
    from nbdeploy.frontends import progress
    from nbdeploy.serve.score_io import one_blas_thread

    one_blas_thread()  # (this process was started to score: before numpy loads)
    from nbdeploy.score import score

    tick = progress.rows_tqdm() if sys.stderr.isatty() else progress.rows_lines()
    _show(args, score(args.bundle, args.input, args.output, workers=args.workers, scheduler=args.scheduler,
                      chunk_rows=args.chunk_rows, id_column=args.id_column, progress=tick))
    return 0


def _drift_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", nargs="?", default="http://127.0.0.1:8080", metavar="URL|BUNDLE",
                   help="a running API's URL (http://..., default http://127.0.0.1:8080; its token from "
                        "NBDEPLOY_API_TOKEN), or with --log the bundle folder or models:/NAME@ALIAS that served the log")
    p.add_argument("--log", metavar="REQUESTS.jsonl",
                   help="read this request log offline (with its rotated and .gz files) against BUNDLE")
    p.add_argument("--html", metavar="FILE", help="also write the report as one self-contained HTML page")
    p.add_argument("--fail-on", choices=["drift", "moderate"],
                   help="exit 3 when a feature's verdict is this or worse (for CI and cron)")
    project_arg(p)
    p.add_argument("--json", action="store_true", help="the report as JSON")


@command("drift", "drift of served inputs and predictions against the training data, per feature (KS, "
         "chi-squared, PSI): of a running API, or offline of a bundle's request log", _drift_args)
def _drift(args: argparse.Namespace) -> int:
    from nbdeploy.bundle import drift

    if drift.is_url(args.source):
        if args.log:
            raise NbdeployError(f"--log reads a request log offline against a bundle, not against the API at "
                                f"{args.source}", hint="give the bundle folder: nbdeploy drift BUNDLE --log LOG")
        report = drift.of_api(args.source, os.environ.get("NBDEPLOY_API_TOKEN"))
    else:
        if not args.log:
            raise NbdeployError(f"{args.source} is not a URL: a bundle needs --log REQUESTS.jsonl (its API's "
                                "request log)", hint="for a running API give its URL, http://HOST:PORT")
        args.bundle = args.source
        report = drift.of_log(bundle_folder(args), args.log)
    _show(args, report)
    if args.html:
        out = report.write_html(args.html)
        print(f"nbdeploy: wrote {out} ({out.stat().st_size // 1024 + 1} kB)", file=sys.stderr)
    if args.fail_on:
        failed = report.failed(args.fail_on)
        if failed:
            print(f"nbdeploy: {', '.join(failed)} at --fail-on {args.fail_on} or worse: exit {drift.EXIT_DRIFTED}",
                  file=sys.stderr)
            return drift.EXIT_DRIFTED
    return 0


def _live_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", nargs="?", default="http://127.0.0.1:8080",
                   help="the running API (default http://127.0.0.1:8080); its token from NBDEPLOY_API_TOKEN")
    p.add_argument("--json", action="store_true", help="the status as JSON")


@command("live", "what a running API is doing: version, requests, errors, drift, canary and shadow", _live_args)
def _live(args: argparse.Namespace) -> int:
    from nbdeploy.bundle.live import live_status

    status = live_status(args.url, os.environ.get("NBDEPLOY_API_TOKEN"))
    _show(args, status)
    return 0 if status.up else 1


for _name, _help, _configure, _handler in cli_release.COMMANDS:  # versions, promote, rollback, history
    command(_name, _help, _configure)(lambda args, _fn=_handler: _fn(args, _show))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nbdeploy", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="From a Jupyter notebook to a verified, serving handoff bundle.",
        epilog="the usual path:\n"
               "  nbdeploy capture NB.ipynb       what the notebook depends on and reads\n"
               "  nbdeploy run NB.ipynb -p a 1    a parameterized run in a fresh kernel, logged to MLflow\n"
               "  nbdeploy build NB.ipynb         the handoff bundle (model, lock, Dockerfile, API, tests)\n"
               "  nbdeploy verify NB-bundle       its tests against its API in a venv from the lock alone\n"
               "  nbdeploy serve NB-bundle        the API on http://127.0.0.1:8080\n"
               "`nbdeploy COMMAND --help` tells a command's options.")
    parser.add_argument("--version", action="version", version=f"nbdeploy {__version__}")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_, configure, _) in COMMANDS.items():
        configure(subs.add_parser(name, help=help_, description=help_))
    return parser


def _skip_slow_optional_imports() -> None:
    """jsonschema imports ``rfc3987_syntax``, when installed, only to check the "iri" format,
    and that module compiles a grammar at import (~3 s). nbdeploy never validates IRIs, and
    every command that reads a notebook imports jsonschema through nbformat."""
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


class _Scrubbed:
    """A text stream that passes every write through the secret scrubber: what the CLI prints
    ends up in CI logs and terminals' scrollback, so a parameter's token must not reach it."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        from nbdeploy.base.redact import scrub_text

        self._stream.write(scrub_text(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    _skip_slow_optional_imports()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Scrubbed(sys.stdout), _Scrubbed(sys.stderr)
    try:
        return _dispatch(args)
    finally:
        sys.stdout, sys.stderr = saved


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return COMMANDS[args.command][2](args)
    except CellExecutionError as exc:
        _finished(False, exc.message, error=exc)
        print(f"nbdeploy: error: {exc}", file=sys.stderr)
        return 1
    except NbdeployError as exc:
        _finished(False, exc.message, error=exc)
        print(f"nbdeploy: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nbdeploy: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
