"""Run the app under uvicorn (httptools + uvloop), in one process or several.

The listening socket is created here, with ``proto=IPPROTO_TCP``. Sockets accepted from
it inherit that protocol, and the event loop then turns Nagle's algorithm off
(TCP_NODELAY) for each connection. uvicorn 0.54 binds its multi-worker socket with
``proto=0`` and so leaves Nagle on in every worker (uvicorn issue 3149: each keep-alive
response waits ~40 ms for the client's delayed ACK); binding the socket ourselves and
handing it to uvicorn's supervisor avoids that in both modes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from .config import ServeConfig
from .errors import ServeError

logger = logging.getLogger("nbdeploy.serve")

#: how long a new worker may take to load its model and start before the supervisor gives up on it
#: (uvicorn also waits this long for a ping answer before it counts a worker as hung)
WORKER_READY_SECONDS = 60


def bind_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as e:
        raise ServeError(f"cannot resolve host {host!r}: {e}") from None
    family, type_, proto, _, addr = infos[0]
    sock = socket.socket(family, type_, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise ServeError(
            f"cannot listen on {host}:{port}: {e.strerror}",
            hint="choose another --port, or stop the process using this one",
        ) from None
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def _exit_cleanly(signum: int, frame: Any) -> None:
    sys.exit(0)


def configure_logging(level: str) -> None:
    log = logging.getLogger("nbdeploy.serve")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(level.upper())
    log.propagate = False


def _uvicorn_options(config: ServeConfig) -> dict[str, Any]:
    import importlib.util

    if importlib.util.find_spec("httptools"):
        from .connection import Protocol

        http: Any = Protocol  # uvicorn's httptools protocol with nbdeploy's leaner request cycle
    else:
        http = "h11"
    return {
        "http": http,
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "lifespan": "on",
        "interface": "asgi3",  # ServeApp.__call__ returns the coroutine; uvicorn would guess ASGI 2
        "log_level": config.log_level,
        "access_log": False,
        "server_header": False,
        # nothing here reads the client's address, so X-Forwarded-For parsing is pure cost
        "proxy_headers": False,
        "timeout_graceful_shutdown": config.graceful_timeout,
        "backlog": 2048,
    }


def check(bundle_dir: str | Path, config: ServeConfig | None = None, compile_imported: bool = False) -> str:
    """Load the bundle's model and predict its input example once; a one-line summary, or ServeError.

    ``compile_imported``: then write the bytecode of every imported module that has none
    (where its folder is writable), so that later starts do not compile them again.
    """
    import time

    from .app import create_app

    t0 = time.perf_counter()
    app = create_app(bundle_dir, config or ServeConfig.from_env())
    seconds = time.perf_counter() - t0
    if app.warm_up_error is not None:
        raise ServeError(f"the model loaded but could not predict its input example: {app.warm_up_error}")
    what = ("and predicted its input example" if app.warmed
            else "(no prediction: no input_example.json with named columns)")
    how = " (its compiled program)" if app.model.program is not None else ""
    summary = (f"{app.bundle.name} v{app.bundle.version}: {app.model.flavor} model{how} loaded {what} "
               f"in {seconds:.2f} s")
    if compile_imported:
        summary += f"; bytecode written for {compile_loaded_modules()} imported modules"
    return summary


def compile_loaded_modules() -> int:
    """Compile every loaded module whose cached bytecode is missing; how many were written."""
    import py_compile

    written = 0
    for module in list(sys.modules.values()):
        spec = getattr(module, "__spec__", None)
        source = getattr(spec, "origin", None) if spec is not None else None
        if not source or not source.endswith(".py") or not (cached := getattr(spec, "cached", None)):
            continue
        if os.path.exists(cached) or not os.path.isfile(source):
            continue
        try:
            py_compile.compile(source, cfile=cached, doraise=True)
            written += 1
        except (OSError, py_compile.PyCompileError):
            continue  # a read-only folder, or a file that does not compile: leave it
    return written


def run(bundle_dir: str | Path, config: ServeConfig | None = None) -> None:
    """Serve ``bundle_dir`` until SIGTERM or SIGINT (blocking)."""
    import uvicorn

    from .app import METRICS_DIR_ENV, create_app
    from .bundle import read_bundle

    config = config or ServeConfig.from_env()
    configure_logging(config.log_level)
    options = _uvicorn_options(config)
    if config.workers == 1:
        app = create_app(bundle_dir, config)  # load before listening: /health means ready
        sock = bind_socket(config.host, config.port)
        server = uvicorn.Server(uvicorn.Config(app, **options))
        how = ", compiled program" if app.model.program is not None else ""
        if app.canary is not None:
            how += f"; canary v{app.canary.version} for {config.canary_percent:g}%"
        if app.shadow is not None:
            how += f"; shadow v{app.shadow.variant.version}"
        print(f"nbdeploy: serving {app.bundle.name} v{app.bundle.version} ({app.model.flavor}{how}) "
              f"on http://{config.host}:{sock.getsockname()[1]} (pid {os.getpid()})", file=sys.stderr, flush=True)
        # uvicorn re-raises SIGTERM after its graceful shutdown; a finished shutdown exits 0
        signal.signal(signal.SIGTERM, _exit_cleanly)
        server.run(sockets=[sock])
        return
    bundle = read_bundle(bundle_dir)  # fail early on a wrong folder
    # as given, not resolved: on SIGHUP the supervisor starts new workers, which follow a symlink anew
    os.environ["NBDEPLOY_SERVE_BUNDLE"] = os.path.abspath(bundle_dir)
    data = config.to_dict()
    data.pop("token", None)  # workers read NBDEPLOY_API_TOKEN themselves; keep it out of this variable
    if config.token:
        os.environ["NBDEPLOY_API_TOKEN"] = config.token
    os.environ["NBDEPLOY_SERVE_CONFIG"] = json.dumps(data)
    # on SIGHUP the supervisor starts a new worker and retires the old one only once the new one is
    # ready: loading a model takes longer than uvicorn's 5 s (it would give up and keep the old one)
    ucfg = uvicorn.Config(f"{__package__}.app:app_from_env", factory=True, workers=config.workers,
                          timeout_worker_healthcheck=WORKER_READY_SECONDS, **options)
    sock = bind_socket(config.host, config.port)
    # each worker writes its counts here; a scrape of any worker answers with the sum of all
    shared = tempfile.mkdtemp(prefix="nbdeploy-metrics-")
    os.environ[METRICS_DIR_ENV] = shared
    print(f"nbdeploy: serving {bundle.name} v{bundle.version} with {config.workers} workers "
          f"on http://{config.host}:{sock.getsockname()[1]} (pid {os.getpid()})", file=sys.stderr, flush=True)
    try:
        _supervisor(ucfg, sock, Path(shared)).run()
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def _supervisor(ucfg: Any, sock: socket.socket, shared: Path) -> Any:
    """uvicorn's supervisor, which replaces a worker that died; this one also says what the dead worker lost.

    A worker killed (SIGKILL, the OOM killer) takes its requests in flight and the request-log lines it
    had not written yet (at most ``flush_interval``, 0.5 s, of answered requests) with it. Each worker
    counts in a file of the shared folder the records it promised and those it settled; the difference
    for a dead worker is what it lost: logged here and counted in /metrics as
    ``nbdeploy_requestlog_dropped_total{reason="worker_died"}``.
    """
    from uvicorn.supervisors import Multiprocess

    from .requestlog import LOG_COUNTERS_SUFFIX, lost_by

    class Supervisor(Multiprocess):
        def keep_subprocess_alive(self) -> None:
            before = list(self.processes)
            super().keep_subprocess_alive()
            for process in before:
                if process not in self.processes:
                    lost = lost_by(shared / f"{process.pid}{LOG_COUNTERS_SUFFIX}")
                    code = process.exitcode
                    how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited ({code})"
                    logger.warning("worker %s %s and was replaced; %d request(s) it had in flight or not yet "
                                   "written to the request log were lost (nbdeploy_requestlog_dropped_total"
                                   "{reason=\"worker_died\"})", process.pid, how, lost)

    return Supervisor(ucfg, sockets=[sock])
