"""The machine and interpreter a notebook ran on, without a single secret.

Only allow-listed environment variables are recorded, and even those are
dropped when their name looks like a secret (see :mod:`nbdeploy.base.redact`).
"""

from __future__ import annotations

import locale
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from nbdeploy.base.redact import is_secret_name

ALLOWED_VARIABLES = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
    "NUMEXPR_MAX_THREADS", "VECLIB_MAXIMUM_THREADS", "BLIS_NUM_THREADS", "PYTHONHASHSEED",
    "CUDA_VISIBLE_DEVICES", "TZ", "LANG", "LC_ALL", "LC_CTYPE", "PYTHONIOENCODING",
    "PYTHONUTF8", "MLFLOW_TRACKING_URI", "TF_DETERMINISTIC_OPS", "CUBLAS_WORKSPACE_CONFIG",
)


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _gpus() -> list[str]:
    """Names of NVIDIA GPUs visible to this process (empty when there are none)."""
    proc = Path("/proc/driver/nvidia/gpus")
    if proc.is_dir():
        names = []
        for d in sorted(proc.iterdir()):
            info = d / "information"
            model = next((ln.split(":", 1)[1].strip() for ln in info.read_text().splitlines()
                          if ln.startswith("Model")), d.name) if info.exists() else d.name
            names.append(model)
        return names
    return ["nvidia (driver device present)"] if Path("/dev/nvidia0").exists() else []


def _timezone() -> str:
    tz = os.environ.get("TZ")
    if tz:
        return tz
    link = Path("/etc/localtime")
    if link.is_symlink():
        target = str(link.resolve())
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    return time.tzname[0]


def capture_environment() -> dict:
    """A JSON-ready description of this interpreter and machine."""
    variables = {
        k: os.environ[k] for k in ALLOWED_VARIABLES if k in os.environ and not is_secret_name(k)
    }
    loc = locale.getlocale()
    return {
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
            "prefix": sys.prefix,
        },
        "os": {"system": platform.system(), "release": platform.release(),
               "platform": platform.platform()},
        "machine": {
            "architecture": platform.machine(),
            "cpu_count": os.cpu_count(),
            "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "memory_bytes": _memory_bytes(),
            "gpus": _gpus(),
            "gpu": bool(_gpus()) or shutil.which("nvidia-smi") is not None,
        },
        "locale": {"language": loc[0], "encoding": loc[1] or locale.getpreferredencoding(False),
                   "timezone": _timezone()},
        "variables": variables,
    }
