"""Which kernel a job runs in: the one asked for, the notebook's own, or this Python's.

A notebook names its kernel in its metadata (``kernelspec.name``). In the wild
that is often the name of the author's own virtual or conda environment, which
does not exist on the machine that runs the job; papermill would stop with
``NoSuchKernel``. So a job runs in:

1. the kernel named with ``--kernel NAME``, which must exist (else a
   :class:`KernelError` that lists the kernels that do);
2. else the kernel the notebook names, when it exists;
3. else the Python kernel of the environment nbdeploy runs in (``python3``,
   ipykernel's own spec, whose ``python`` jupyter_client replaces with this
   interpreter), with one line that says so.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbdeploy.base.errors import KernelError

FALLBACK = "python3"  # jupyter_client's NATIVE_KERNEL_NAME: ipykernel in this environment


@dataclass(frozen=True)
class KernelChoice:
    name: str
    note: str = ""  # one line for the user when nbdeploy chose another kernel than the notebook's


def available() -> dict[str, str]:
    """The kernel specs this machine has: {name: folder}."""
    from jupyter_client.kernelspec import KernelSpecManager

    return KernelSpecManager().find_kernel_specs()


def _interpreter(name: str) -> str:
    """The program the kernel spec ``name`` starts (``python`` is this interpreter)."""
    from jupyter_client.kernelspec import KernelSpecManager

    argv = KernelSpecManager().get_kernel_spec(name).argv
    plain = {"python", f"python{sys.version_info[0]}", f"python{sys.version_info[0]}.{sys.version_info[1]}"}
    return sys.executable if not argv or argv[0] in plain else argv[0]


def choose_kernel(nb: Any, notebook: str | Path, requested: str | None = None) -> KernelChoice:
    """The kernel to run ``nb`` (read from ``notebook``) in; raises before any kernel starts."""
    specs = available()
    listed = ", ".join(sorted(specs)) or "none"
    name = Path(notebook).name
    if requested:
        if requested in specs:
            return KernelChoice(requested)
        raise KernelError(
            f"cannot run {name} in the kernel {requested!r}: no kernel of that name on this "
            f"machine (available: {listed})",
            hint="pass --kernel with one of those, or register that environment's kernel: "
                 f"ENV/bin/python -m ipykernel install --user --name {requested}")
    named = ((nb.metadata.get("kernelspec") or {}).get("name") or "") if nb is not None else ""
    if named in specs:
        return KernelChoice(named)
    if FALLBACK not in specs:
        raise KernelError(
            f"cannot run {name}: its kernel {named or '(none named)'!r} is not on this machine, and "
            f"neither is a {FALLBACK} kernel (available: {listed})",
            hint=f"pass --kernel NAME, or install ipykernel: {sys.executable} -m pip install ipykernel")
    why = (f"the kernel {named!r} that {name} names is not on this machine" if named
           else f"{name} names no kernel")
    return KernelChoice(FALLBACK, f"{why}: running it in {FALLBACK} ({_interpreter(FALLBACK)}), "
                                  "the Python nbdeploy runs in; choose with --kernel NAME")
