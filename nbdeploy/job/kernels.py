"""Warm kernel starts for a local batch: new kernel processes forked from a kernel server.

Every run of a batch gets a new kernel process, and every new job kernel first
spends the same ~0.7 CPU s before the notebook's first cell: starting the
interpreter, importing ipykernel, IPython, zmq and tornado, loading nbdeploy's
capture (the injected first cell) and indexing the installed distributions (the
capture session's first write). On a small notebook that is a third of a run. So
a local batch starts one *kernel server* (``python -c "...kernels import serve;
serve(...)"``) that does that work once, single-threaded, and then forks a child
for every run. The child becomes a kernel as ``python -m ipykernel_launcher -f
CONNECTION_FILE`` would: its own session and process group, the run's working
directory and environment, the same ``sys.path``, stdin from /dev/null, stdout
and stderr inherited, a new kernel app and IPython shell with an empty
namespace. It has never run notebook code. It shares with the other runs of
the batch what a fresh kernel would have computed identically (the modules in
:data:`PRELOAD`, the distribution index) and, unlike fresh kernels, the
interpreter's string-hash seed: the iteration order of a set of strings is the
same in every run of a batch (set ``PYTHONHASHSEED`` to choose it). ``ps``
shows the kernels with the server's command line.

Only kernels the server can reproduce exactly are forked: the kernel command is
``<this interpreter> -m ipykernel_launcher ...`` and its environment is the
server's (``JPY_*`` aside). Anything else, a platform without ``os.fork`` and
``os.pidfd_open`` (Linux only), or a server that cannot start or stops
answering, falls back to an ordinary kernel start. :func:`warm_starts` brackets
a batch; inside it, :func:`manager_class` is the ``AsyncKernelManager`` papermill
is given (``kernel_manager_class``).

Protocol on the control socket (one JSON document per line): the driver sends
``{"argv": [...], "env": {...}, "cwd": "..."}``, the server answers
``{"pid": N}`` or ``{"error": "..."}``. The server reaps its children; the
driver watches each kernel through a pidfd (exit statuses stay with the server;
the driver sees 0). When the control socket closes the server waits for its
kernels (SIGKILL after a grace period, for a driver that died) and exits, so
the kernels' CPU time is accounted to the batch's process like any child's.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any, cast

#: what every job kernel imports before the notebook's first cell: the kernel, and
#: nbdeploy's capture (the injected first cell runs ``%load_ext nbdeploy`` and ``%deploy init``)
PRELOAD = ("ipykernel.kernelapp", "ipykernel.ipkernel", "nbdeploy.frontends.magics",
           "nbdeploy.capture.session")
_START_TIMEOUT = 120.0  # seconds the driver waits for the server to fork a kernel
_GRACE = 10.0  # seconds the server gives its kernels to exit once the driver is gone


def supported() -> bool:
    return hasattr(os, "fork") and hasattr(os, "pidfd_open") and sys.platform == "linux"


def _comparable(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith("JPY_")}


# -- the server (runs in its own process) ---------------------------------------
def serve(fd: int, preload: list[str]) -> None:
    """Import ``preload`` once, then fork a kernel per request on the control socket ``fd``."""
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]  # as ipykernel_launcher does; IPython adds the kernel's cwd back
    import importlib

    for name in preload:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    # the capture session's first write indexes the installed distributions; the
    # same index, built once here, is what each kernel would build at its start
    with contextlib.suppress(ImportError):
        from nbdeploy.capture.deps import index_installed

        index_installed()
    ctl = socket.socket(fileno=fd)
    reader = ctl.makefile("rb")
    children: set[int] = set()
    while True:
        ready, _, _ = select.select([ctl], [], [], 0.2)
        _reap(children)
        if not ready:
            continue
        line = reader.readline()
        if not line:
            break
        req = json.loads(line)
        if threading.active_count() != 1:  # fork is only safe from a single thread
            ctl.sendall(json.dumps({"error": "the kernel server is not single-threaded"})
                        .encode() + b"\n")
            continue
        pid = os.fork()
        if pid == 0:
            reader.close()
            ctl.close()
            _become_kernel(req["argv"], req["env"], req["cwd"])  # never returns
        children.add(pid)
        ctl.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    _drain(children)


def _reap(children: set[int]) -> None:
    for pid in list(children):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            children.discard(pid)


def _drain(children: set[int]) -> None:
    """Wait for the kernels still running (the driver is gone), killing them after a grace."""
    import time

    deadline = time.monotonic() + _GRACE
    while children and time.monotonic() < deadline:
        _reap(children)
        time.sleep(0.1)
    for pid in children:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _become_kernel(argv: list[str], env: dict[str, str], cwd: str | None) -> None:
    """In the forked child: set up the process as ``launch_kernel`` would and run the kernel."""
    code = 1
    try:
        os.setsid()  # start_new_session=True, so interrupts go to the kernel's group only
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        if cwd:
            os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        parent = str(os.getppid())  # the kernel exits if the server goes away
        os.environ["JPY_PARENT_PID"] = parent
        import ipykernel_launcher
        from ipykernel import kernelapp

        # parent_handle's default was read from the environment when the server imported it
        sys.argv = [ipykernel_launcher.__file__, *argv[3:], f"--IPKernelApp.parent_handle={parent}"]
        try:
            kernelapp.launch_new_instance()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        import atexit

        atexit._run_exitfuncs()
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


# -- the driver's side -------------------------------------------------------------
class _Forked:
    """The part of ``subprocess.Popen`` a kernel provisioner uses, for a forked kernel."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._fd: int | None = None
        try:
            self._fd = os.pidfd_open(pid)
        except ProcessLookupError:  # already exited and reaped
            self.returncode = 0

    def poll(self) -> int | None:
        return self.wait(0)

    def wait(self, timeout: float | None = None) -> int | None:
        if self.returncode is None and self._fd is not None:
            if select.select([self._fd], [], [], timeout)[0]:
                os.close(self._fd)
                self._fd = None
                self.returncode = 0  # the server reaps it; its status is not ours to read
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self._fd is not None:
            signal.pidfd_send_signal(self._fd, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class KernelServer:
    """One kernel server process and its control socket (thread-safe)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = _comparable(env)
        self.broken = False
        self._lock = threading.Lock()
        ours, theirs = socket.socketpair()
        ours.settimeout(_START_TIMEOUT)
        self._sock = ours
        self._reader = ours.makefile("rb")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from nbdeploy.job.kernels import serve; "
             f"serve({theirs.fileno()}, {list(PRELOAD)!r})"],
            env=self.env, stdin=subprocess.DEVNULL, pass_fds=(theirs.fileno(),),
            start_new_session=True,
        )
        theirs.close()

    def accepts(self, cmd: list[str], kw: dict[str, Any]) -> bool:
        return (len(cmd) >= 3 and cmd[0] == sys.executable and cmd[1:3] == ["-m", "ipykernel_launcher"]
                and set(kw) <= {"env", "cwd"} and _comparable(kw.get("env") or {}) == self.env
                and not self.broken and self.proc.poll() is None)

    def launch(self, cmd: list[str], env: dict[str, str], cwd: str | None) -> _Forked:
        req = json.dumps({"argv": cmd, "env": env, "cwd": str(cwd) if cwd else None})
        with self._lock:
            try:
                self._sock.sendall(req.encode() + b"\n")
                line = self._reader.readline()
            except OSError:
                self.broken = True  # the stream is out of step (timeout) or gone
                raise
        if not line:
            self.broken = True
            raise OSError("the kernel server exited")
        reply = json.loads(line)
        if "pid" not in reply:
            raise OSError(reply.get("error", "the kernel server refused"))
        return _Forked(reply["pid"])

    def close(self) -> None:
        with self._lock:
            self._reader.close()
            self._sock.close()
        self.proc.wait()


_server: KernelServer | None = None
_users = 0
_server_lock = threading.Lock()


@contextlib.contextmanager
def warm_starts() -> Iterator[None]:
    """While inside, :func:`manager_class` forks this process's kernels from a kernel server.

    Nestable and thread-safe (two batches in one Jupyter server share the server);
    the server stops when the last user leaves, after its kernels have exited.
    """
    global _server, _users
    with _server_lock:
        _users += 1
        if _server is None and supported():
            env = dict(os.environ)
            env.pop("PYTHONEXECUTABLE", None)  # jupyter_client drops it for Python kernels
            try:
                _server = KernelServer(env)
            except OSError:
                _server = None
    try:
        yield
    finally:
        with _server_lock:
            _users -= 1
            server = _server if _users == 0 else None
            if server is not None:
                _server = None
        if server is not None:
            server.close()


def manager_class() -> type | None:
    """The kernel manager class for papermill while a kernel server runs, else None."""
    return _manager_class() if _server is not None else None


def _manager_class() -> type:
    global _WarmKernelManager
    if _WarmKernelManager is None:
        from jupyter_client import AsyncKernelManager
        from jupyter_client.provisioning import LocalProvisioner

        class WarmKernelManager(AsyncKernelManager):
            """Launches through the kernel server when it can reproduce the kernel exactly."""

            async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
                server, prov = _server, self.provisioner
                if (server is not None and type(prov) is LocalProvisioner
                        and server.accepts(kernel_cmd, kw)):
                    try:  # Popen would start it in this process's current directory
                        proc = server.launch(kernel_cmd, kw["env"], kw.get("cwd") or os.getcwd())
                    except OSError as exc:
                        self.log.warning("nbdeploy: no warm kernel start (%s); starting it cold", exc)
                    else:
                        # (the provisioner uses only the part of Popen that _Forked has)
                        prov.process, prov.pid, prov.pgid = cast("subprocess.Popen[Any]", proc), proc.pid, proc.pid
                        prov.cwd = kw.get("cwd") or os.getcwd()
                        self._reconcile_connection_info(prov.connection_info)
                        return
                await super()._async_launch_kernel(kernel_cmd, **kw)

        _WarmKernelManager = WarmKernelManager
    return _WarmKernelManager


_WarmKernelManager: type | None = None
