"""Long operations of the panel as jobs: ``python -m nbdeploy run|reproduce|build|verify|serve``.

Each job is a subprocess started with asyncio (the server's event loop never
waits on it). Its output goes line by line into a log file for the user to read;
the job's progress, error and summary come from the typed events the command
writes to the file named by ``NBDEPLOY_EVENTS`` (:mod:`nbdeploy.base.progress`),
never from its printed text. A serve job keeps running until it is stopped.
"""

from __future__ import annotations

import asyncio
import atexit
import datetime as dt
import os
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import uuid
from pathlib import Path

from nbdeploy.base.errors import NbdeployError
from nbdeploy.base.progress import EVENTS_ENV, Finished, ProgressEvent, read_events
from nbdeploy.frontends.jupyter.models import (
    JOB_KINDS,
    Job,
    JobRequest,
    JobResult,
    JobState,
    LogChunk,
)
from nbdeploy.frontends.jupyter.paths import NotFoundError, Root

_MAX_CHUNK = 256 * 1024
_NOTEBOOK_KINDS = {"run", "reproduce", "build", "batch"}


class JobConflictError(NbdeployError):
    status = 409


class UnavailableError(NbdeployError):
    status = 501


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli_commands() -> set[str]:
    from nbdeploy.frontends.cli import COMMANDS

    return set(COMMANDS)


def _checked_parameters(notebook: Path, values: dict[str, str]) -> list[str]:
    """``-p NAME VALUE`` arguments, after the core checked each against the parameters cell."""
    if not values:
        return []
    from nbdeploy.base.notebook import load_notebook
    from nbdeploy.job.params import find_parameters_cell, resolve

    resolve(find_parameters_cell(load_notebook(notebook)), cli=list(values.items()))
    return [a for name, value in values.items() for a in ("-p", name, value)]


def _workers(workers: int | None) -> list[str]:
    if workers is None:
        return []
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 64:
        raise NbdeployError(f"`workers` must be a whole number from 1 to 64, not {workers!r}")
    return ["--workers", str(workers)]


def _bundle_folder(folder: Path, api_path: str) -> None:
    if not folder.is_dir() or not (folder / "nbdeploy.json").is_file():
        raise NbdeployError(f"{api_path} is not a bundle folder",
                            hint="give a folder made by Build bundle (it holds nbdeploy.json)")


class _Running:
    def __init__(self, job: Job, log: Path, events: Path, proc: asyncio.subprocess.Process,
                 bundle: Path | None, port: int | None) -> None:
        self.job, self.log, self.proc, self.bundle, self.port = job, log, proc, bundle, port
        self.events, self.events_offset = events, 0
        self.finished: Finished | None = None
        self.stopping = False
        self.last_lines: list[str] = []
        self.task: asyncio.Task | None = None


class JobManager:
    """Start, follow and stop jobs; one job of a kind per path at a time."""

    def __init__(self, root: Root, log_dir: str | os.PathLike[str] | None = None,
                 python: str = sys.executable) -> None:
        self.root = root
        self.python = python
        self._own_log_dir = log_dir is None
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="nbdeploy-jobs-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._jobs: dict[str, _Running] = {}
        atexit.register(self._kill_all)

    # -- queries -------------------------------------------------------------
    def get(self, job_id: str) -> Job:
        if job_id not in self._jobs:
            raise NotFoundError(f"no job {job_id!r}")
        return self._jobs[job_id].job

    def all(self) -> list[Job]:
        return [r.job for r in self._jobs.values()]

    def log(self, job_id: str, offset: int = 0) -> LogChunk:
        run = self._jobs.get(job_id)
        if run is None:
            raise NotFoundError(f"no job {job_id!r}")
        if offset < 0:
            raise NbdeployError("`offset` must be >= 0")
        with open(run.log, "rb") as fh:
            fh.seek(offset)
            data = fh.read(_MAX_CHUNK)
        end = offset + len(data)
        complete = run.job.state != "running" and end >= run.log.stat().st_size
        return LogChunk(job_id, offset, end, data.decode("utf-8", "replace"), complete)

    # -- starting ------------------------------------------------------------
    def _argv(self, req: JobRequest) -> tuple[list[str], Path, Path | None, int | None]:
        """(command, working directory, bundle folder, port) of a request; raise on bad input.

        The command is the CLI's, option for option; its inputs are checked here, by the
        core, so a bad value is a 4xx naming the field rather than a job that fails."""
        if req.kind not in JOB_KINDS:
            raise NbdeployError(f"unknown job kind {req.kind!r}", hint=f"one of {', '.join(JOB_KINDS)}")
        target = self.root.resolve(req.path)
        cli = [self.python, "-m", "nbdeploy"]
        commands = _cli_commands()
        if req.kind != "serve" and req.kind not in commands:
            raise UnavailableError(f"`nbdeploy {req.kind}` is not available in this installation")
        if req.kind in _NOTEBOOK_KINDS:
            if target.suffix != ".ipynb" or not target.is_file():
                raise NbdeployError(f"{req.path} is not a notebook", hint="give a .ipynb file")
            params = _checked_parameters(target, req.parameters)
            cwd = target.parent
            if req.kind == "build":
                from nbdeploy.base.state import default_bundle_dir

                out = (self.root.resolve(req.output, must_exist=False) if req.output
                       else default_bundle_dir(target))
                from nbdeploy.bundle.models import is_model_name

                if req.model is not None and not is_model_name(req.model):
                    raise NbdeployError(f"`model` {req.model!r} is not a variable name",
                                        hint="choose one of the candidates of the last build")
                argv = cli + ["build", str(target), "-o", str(out)] + params
                argv += ["--model", req.model] if req.model else []
                return argv + (["--force"] if req.force else []), cwd, out, None
            if req.kind == "run":
                return cli + ["run", str(target)] + params, cwd, None, None
            if req.kind == "batch":
                if not req.grid:
                    raise NbdeployError("`grid` is missing: a batch runs the notebook over a grid file",
                                        hint="give a YAML file such as grid.yaml: {grid: {alpha: [0.1, 1]}}")
                grid = self.root.resolve(req.grid)
                argv = cli + ["batch", str(target), "--grid", str(grid)]
                return argv + _workers(req.workers), cwd, None, None
            return cli + ["reproduce", str(target)], cwd, None, None
        _bundle_folder(target, req.path)
        if req.kind == "verify":
            container = ["--container"] if req.container else []
            return cli + ["verify", str(target)] + container, target.parent, target, None
        port = _free_port()
        serve = cli + ["serve"] if "serve" in commands else [self.python, "-m", "nbdeploy.serve"]
        argv = serve + [str(target), "--host", "127.0.0.1", "--port", str(port)] + _workers(req.workers)
        for option, candidate in (("--shadow", req.shadow), ("--canary", req.canary)):
            if candidate:
                folder = self.root.resolve(candidate)
                _bundle_folder(folder, candidate)
                argv += [option, str(folder)]
        if req.canary_percent is not None:
            if not req.canary:
                raise NbdeployError("`canary_percent` needs `canary`: the bundle that answers that share")
            if not 0 < req.canary_percent <= 100:
                raise NbdeployError(f"`canary_percent` must be in (0, 100], not {req.canary_percent}")
            argv += ["--canary-percent", str(req.canary_percent)]
        return argv, target.parent, target, port

    async def start(self, req: JobRequest) -> Job:
        argv, cwd, bundle, port = self._argv(req)
        for r in self._jobs.values():
            if r.job.state == "running" and r.job.kind == req.kind and r.job.path == req.path:
                raise JobConflictError(f"a {req.kind} job of {req.path} is already running",
                                       hint=f"follow job {r.job.id} or stop it first")
        job_id = uuid.uuid4().hex[:12]
        log = self.log_dir / f"{job_id}.log"
        log.write_text(f"$ {shlex.join(self._shown(argv[1:]))}\n", encoding="utf-8")
        events = self.log_dir / f"{job_id}.events.jsonl"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "NBDEPLOY_JOB": job_id, EVENTS_ENV: str(events)}
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True)
        job = Job(job_id, req.kind, req.path, "running", argv, _now())
        run = _Running(job, log, events, proc, bundle, port)
        self._jobs[job_id] = run
        run.task = asyncio.create_task(self._follow(run))
        return job

    def _shown(self, args: list[str]) -> list[str]:
        """The command as the log shows it: files under the root by their path in the root, as
        the panel names them (the server's own folders are no business of the log's readers)."""
        shown = []
        for a in args:
            rel = self.root.relative(a) if os.path.isabs(a) else None
            shown.append(rel if rel else a)
        return shown

    # -- following -----------------------------------------------------------
    async def _follow(self, run: _Running) -> None:
        assert run.proc.stdout is not None
        ready = asyncio.create_task(self._wait_ready(run)) if run.port else None
        poll = asyncio.create_task(self._poll_events(run))  # steps that print nothing for minutes
        with open(run.log, "ab", buffering=0) as fh:
            while line := await run.proc.stdout.readline():
                fh.write(line)
                self._on_line(run, line.decode("utf-8", "replace").rstrip())
                self._read_events(run)
        rc = await run.proc.wait()
        poll.cancel()
        self._read_events(run)
        if ready is not None:
            ready.cancel()
        job = run.job
        job.returncode = rc
        state: JobState = "stopped" if run.stopping else "succeeded" if rc == 0 else "failed"
        if state == "failed":
            job.error = self._error_line(run)
        result = await asyncio.to_thread(self._result, run, state)
        if state == "succeeded":
            job.progress = 1.0
        # publish the state last: a poll never sees a finished job without its result
        job.result, job.finished, job.state = result, _now(), state
        with open(run.log, "a", encoding="utf-8") as fh:
            fh.write(f"\n[{job.kind} {job.state}, exit code {rc}]\n")

    @staticmethod
    def _on_line(run: _Running, line: str) -> None:
        if line.strip():
            run.last_lines = (run.last_lines + [line])[-20:]

    async def _poll_events(self, run: _Running) -> None:
        while run.proc.returncode is None:
            await asyncio.sleep(0.5)
            self._read_events(run)

    @staticmethod
    def _read_events(run: _Running) -> None:
        """Apply the typed events the command wrote since the last read."""
        try:
            events, run.events_offset = read_events(run.events, run.events_offset)
        except ValueError:  # not an event file of this nbdeploy: progress stays as it is
            return
        for event in events:
            if isinstance(event, Finished):
                run.finished = event
            elif isinstance(event, ProgressEvent):
                if event.fraction is not None:
                    run.job.progress = event.fraction
                if event.outcome in ("started", "note"):
                    run.job.step = event.title

    @staticmethod
    def _error_line(run: _Running) -> str:
        f = run.finished
        if f is not None and not f.ok:
            return (f.error or {}).get("message") or f.summary or f"exit code {run.job.returncode}"
        return f"exit code {run.job.returncode}" + (f": {run.last_lines[-1]}" if run.last_lines else "")

    async def _wait_ready(self, run: _Running) -> None:
        """Serve jobs: publish the URL once the API accepts connections."""
        while run.proc.returncode is None:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", run.port)
            except OSError:
                await asyncio.sleep(0.25)
                continue
            writer.close()
            run.job.progress, run.job.step = 1.0, "serving"
            run.job.result = await asyncio.to_thread(self._result, run)
            return

    def _result(self, run: _Running, state: str | None = None) -> JobResult:
        job = run.job
        state = state or job.state
        ok = state == "succeeded" or (job.kind == "serve" and state == "running")
        summary = (run.finished.summary if run.finished is not None else "") if ok else (job.error or "")
        res = JobResult(ok=ok, summary=summary)
        if run.bundle is not None and run.bundle.is_dir():
            res.bundle = self.root.relative(run.bundle)
            if (run.bundle / "README.md").is_file():
                res.readme = self.root.relative(run.bundle / "README.md")
        if job.kind == "serve" and run.port:
            res.url = f"http://127.0.0.1:{run.port}"
            from nbdeploy.bundle.servers import sample_curl

            res.curl = sample_curl(res.url, run.bundle) if run.bundle else None
            res.summary = f"serving {run.bundle.name if run.bundle else ''} at {res.url}"
        if job.kind in ("run", "reproduce"):
            from nbdeploy.base.state import NotebookState
            from nbdeploy.bundle.readiness import latest_run

            last = latest_run(NotebookState.for_notebook(self.root.resolve(job.path)))
            res.run_id = last.get("run_id") if last else None
        return res

    # -- stopping ------------------------------------------------------------
    async def stop(self, job_id: str) -> Job:
        run = self._jobs.get(job_id)
        if run is None:
            raise NotFoundError(f"no job {job_id!r}")
        if run.job.state != "running":
            return run.job
        run.stopping = True
        self._signal(run, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(run.task), timeout=10) if run.task else None
        except TimeoutError:
            self._signal(run, signal.SIGKILL)
            if run.task:
                await run.task
        return run.job

    @staticmethod
    def _signal(run: _Running, sig: int) -> None:
        try:
            os.killpg(run.proc.pid, sig)
        except ProcessLookupError:
            pass

    async def shutdown(self) -> None:
        for job_id, run in list(self._jobs.items()):
            if run.job.state == "running":
                await self.stop(job_id)

    def _kill_all(self) -> None:
        """At interpreter exit: no job outlives the server, and its logs go with it."""
        for run in self._jobs.values():
            if run.proc.returncode is None:
                self._signal(run, signal.SIGTERM)
        if self._own_log_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)
