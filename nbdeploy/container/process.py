"""Running engine commands: streamed progress for long ones, captured output for short ones."""

from __future__ import annotations

import subprocess
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nbdeploy.base.errors import ContainerError

OnLine = Callable[[str], None]


@dataclass
class Streamed:
    returncode: int
    lines: list[str]  # every line of combined stdout and stderr


def stream(cmd: Sequence[str], on_line: OnLine | None = None, *, keep: int = 5000) -> Streamed:
    """Run ``cmd``, passing each output line to ``on_line`` as it arrives."""
    kept: deque[str] = deque(maxlen=keep)
    try:
        proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, errors="replace", bufsize=1)
    except OSError as exc:
        raise ContainerError(f"cannot run {cmd[0]}: {exc}") from None
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            kept.append(line)
            if on_line:
                on_line(line)
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return Streamed(rc, list(kept))


def run(cmd: Sequence[str], what: str, timeout: float = 120, check: bool = True
        ) -> subprocess.CompletedProcess[str]:
    """Run a short engine command; on failure raise ContainerError saying ``what`` failed."""
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout,
                              errors="replace")
    except subprocess.TimeoutExpired:
        raise ContainerError(f"{what}: `{' '.join(cmd)}` did not finish in {timeout:.0f} s") from None
    except OSError as exc:
        raise ContainerError(f"{what}: cannot run {cmd[0]}: {exc}") from None
    if check and proc.returncode != 0:
        out = (proc.stderr or proc.stdout).strip()
        raise ContainerError(f"{what} failed (exit status {proc.returncode}): {out[-2000:]}")
    return proc
