"""Long operations of the panel as jobs: ``python -m nbdeploy run|reproduce|build|verify|serve``.

Each job is a subprocess started with asyncio (the server's event loop never
waits on it). Its output goes line by line into a log file; lines such as
``[2/5] assemble the bundle ...`` update the job's progress. When the process
ends, the result is read from what the command wrote (the bundle folder, the
run records). A serve job keeps running until it is stopped.
"""

from __future__ import annotations

import asyncio
import atexit
import datetime as dt
import os
import re
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import uuid
from pathlib import Path

from ..errors import NbdeployError
from .models import JOB_KINDS, Job, JobRequest, JobResult, LogChunk
from .paths import NotFoundError, Root

_STEP = re.compile(r"^\s*\[(\d+)/(\d+)\]\s*(.*)$")
_MAX_CHUNK = 256 * 1024
_NOTEBOOK_KINDS = {"run", "reproduce", "build"}


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
    from ..cli import COMMANDS

    return set(COMMANDS)


class _Running:
    def __init__(self, job: Job, log: Path, proc: asyncio.subprocess.Process, bundle: Path | None,
                 port: int | None) -> None:
        self.job, self.log, self.proc, self.bundle, self.port = job, log, proc, bundle, port
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
        """(command, working directory, bundle folder, port) of a request; raise on bad input."""
        if req.kind not in JOB_KINDS:
            raise NbdeployError(f"unknown job kind {req.kind!r}", hint=f"one of {', '.join(JOB_KINDS)}")
        target = self.root.resolve(req.path)
        cli = [self.python, "-m", "nbdeploy"]
        commands = _cli_commands()
        if req.kind != "serve" and req.kind not in commands:
            raise UnavailableError(f"`nbdeploy {req.kind}` is not available in this installation")
        params = [a for name, value in req.parameters.items() for a in ("-p", str(name), str(value))]
        if req.kind in _NOTEBOOK_KINDS:
            if target.suffix != ".ipynb" or not target.is_file():
                raise NbdeployError(f"{req.path} is not a notebook", hint="give a .ipynb file")
            cwd = target.parent
            if req.kind == "build":
                from ..bundle.build import default_output

                out = (self.root.resolve(req.output, must_exist=False) if req.output
                       else default_output(target))
                argv = cli + ["build", str(target), "-o", str(out)] + params
                return argv + (["--force"] if req.force else []), cwd, out, None
            if req.kind == "run":
                return cli + ["run", str(target)] + params, cwd, None, None
            return cli + ["reproduce", str(target)], cwd, None, None
        if not target.is_dir() or not (target / "nbdeploy.json").is_file():
            raise NbdeployError(f"{req.path} is not a bundle folder",
                                hint="give a folder made by Build bundle (it holds nbdeploy.json)")
        if req.kind == "verify":
            container = ["--container"] if req.container else []
            return cli + ["verify", str(target)] + container, target.parent, target, None
        port = _free_port()
        serve = cli + ["serve"] if "serve" in commands else [self.python, "-m", "nbdeploy.serve"]
        return (serve + [str(target), "--host", "127.0.0.1", "--port", str(port)],
                target.parent, target, port)

    async def start(self, req: JobRequest) -> Job:
        argv, cwd, bundle, port = self._argv(req)
        for r in self._jobs.values():
            if r.job.state == "running" and r.job.kind == req.kind and r.job.path == req.path:
                raise JobConflictError(f"a {req.kind} job of {req.path} is already running",
                                       hint=f"follow job {r.job.id} or stop it first")
        job_id = uuid.uuid4().hex[:12]
        log = self.log_dir / f"{job_id}.log"
        log.write_text(f"$ {shlex.join(argv[1:])}\n", encoding="utf-8")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "NBDEPLOY_JOB": job_id}
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True)
        job = Job(job_id, req.kind, req.path, "running", argv, _now())
        run = _Running(job, log, proc, bundle, port)
        self._jobs[job_id] = run
        run.task = asyncio.create_task(self._follow(run))
        return job

    # -- following -----------------------------------------------------------
    async def _follow(self, run: _Running) -> None:
        assert run.proc.stdout is not None
        ready = asyncio.create_task(self._wait_ready(run)) if run.port else None
        with open(run.log, "ab", buffering=0) as fh:
            while line := await run.proc.stdout.readline():
                fh.write(line)
                self._on_line(run, line.decode("utf-8", "replace").rstrip())
        rc = await run.proc.wait()
        if ready is not None:
            ready.cancel()
        job = run.job
        job.returncode = rc
        state = "stopped" if run.stopping else "succeeded" if rc == 0 else "failed"
        if state == "failed":
            job.error = self._error_line(run)
        result = await asyncio.to_thread(self._result, run, state)
        if state == "succeeded":
            job.progress = 1.0
        # publish the state last: a poll never sees a finished job without its result
        job.result, job.finished, job.state = result, _now(), state
        with open(run.log, "a", encoding="utf-8") as fh:
            fh.write(f"\n[{job.kind} {job.state}, exit code {rc}]\n")

    def _on_line(self, run: _Running, line: str) -> None:
        if not line.strip():
            return
        run.last_lines = (run.last_lines + [line])[-20:]
        m = _STEP.match(line)
        if m:
            i, n = int(m.group(1)), int(m.group(2))
            if n > 0:
                run.job.progress = max(0.0, min(1.0, (i - 1) / n))
                run.job.step = m.group(3).rstrip(" .")

    @staticmethod
    def _error_line(run: _Running) -> str:
        for prefix in ("nbdeploy: error: ", "error: ", "FAIL "):
            for line in reversed(run.last_lines):
                if line.startswith(prefix):
                    return line[len(prefix):].strip()
        return run.last_lines[-1] if run.last_lines else f"exit code {run.job.returncode}"

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
        tail = [ln for ln in run.last_lines if not ln.startswith("[")]
        summary = (tail[-1] if tail else "") if ok else (job.error or "")
        res = JobResult(ok=ok, summary=summary)
        if run.bundle is not None and run.bundle.is_dir():
            res.bundle = self.root.relative(run.bundle)
            if (run.bundle / "README.md").is_file():
                res.readme = self.root.relative(run.bundle / "README.md")
        if job.kind == "serve" and run.port:
            res.url = f"http://127.0.0.1:{run.port}"
            example = run.bundle / "model" / "serving_input_example.json" if run.bundle else None
            data = f"@{shlex.quote(str(example))}" if example and example.is_file() else (
                "'{\"dataframe_records\": [{...}]}'")
            res.curl = (f"curl -s -X POST {res.url}/invocations "
                        f"-H 'Content-Type: application/json' -d {data}")
            res.summary = f"serving {run.bundle.name if run.bundle else ''} at {res.url}"
        if job.kind in ("run", "reproduce"):
            from ..readiness import latest_run
            from ..state import NotebookState

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
