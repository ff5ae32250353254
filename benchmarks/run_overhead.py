"""Per-run overhead of `nbdeploy run` over a bare `papermill.execute_notebook`.

Both execute the same small notebook (a parameters cell, a pandas read, a metric)
in a fresh kernel, alternating, after one warm-up each. Reported: the median wall
time of each and the overhead in percent, at two levels:

* in process: ``run_notebook(...)`` vs ``papermill.execute_notebook(...)``
* command line: ``nbdeploy run NB -p ...`` vs ``papermill NB OUT -p ...``

``nbdeploy run`` logs to MLflow from a detached process by default (the run
record is complete when the command returns); the logger's own time is reported
separately, and each iteration waits for it so it does not slow the next one.

    .venv/bin/python benchmarks/run_overhead.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def make_notebook(folder: Path) -> Path:
    import nbformat

    v4 = nbformat.v4
    nb = v4.new_notebook()
    params = v4.new_code_cell("alpha = 1.0\nseed = 0")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        v4.new_code_cell("%load_ext nbdeploy\n%deploy init"),
        params,
        v4.new_code_cell("import numpy as np\nimport pandas as pd\n\ndf = pd.read_csv('data.csv')"),
        v4.new_code_cell("rng = np.random.default_rng(seed)\n"
                         "score = float((df['x'] * alpha + rng.normal(size=len(df))).mean())"),
        v4.new_code_cell("%deploy metric score {score}"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (folder / "data.csv").write_text("x,y\n" + "".join(f"{i},{i % 7}\n" for i in range(500)))
    path = folder / "bench.ipynb"
    nbformat.write(nb, path)
    (folder / "out").mkdir()
    return path


def _bare(nb: Path, i: int) -> float:
    import papermill as pm

    t = time.perf_counter()
    pm.execute_notebook(str(nb), str(nb.parent / "out" / f"pm-{i}.ipynb"),
                        parameters={"alpha": 0.5 + i}, cwd=str(nb.parent), progress_bar=False)
    return time.perf_counter() - t


def _nbdeploy(nb: Path, i: int) -> tuple[float, float]:
    from nbdeploy.job.run import run_notebook
    from nbdeploy.job.tracking import wait_logged

    t = time.perf_counter()
    rec = run_notebook(nb, parameters={"alpha": 0.5 + i})
    took = time.perf_counter() - t
    t = time.perf_counter()
    doc = wait_logged(rec.run_dir, timeout=600)
    assert doc["status"] == "logged", doc
    return took, time.perf_counter() - t


def _wait_last_logged(nb: Path) -> None:
    from nbdeploy.job.run import last_run
    from nbdeploy.job.tracking import wait_logged

    wait_logged(last_run(nb).run_dir, timeout=600)


def _cli(argv: list[str], cwd: Path) -> float:
    t = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--skip-cli", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="nbdeploy-bench-") as tmp:
        nb = make_notebook(Path(tmp))
        _bare(nb, 99), _nbdeploy(nb, 99)  # warm-up (first MLflow store creation included)
        bare, ours, logger = [], [], []
        for i in range(args.repeat):
            bare.append(_bare(nb, i))
            took, log = _nbdeploy(nb, i)
            ours.append(took)
            logger.append(log)
        mb, mo = statistics.median(bare), statistics.median(ours)
        print(f"in process, median of {args.repeat}: papermill.execute_notebook {mb:.2f}s, "
              f"run_notebook {mo:.2f}s -> overhead {100 * (mo - mb) / mb:+.1f}%")
        print(f"  detached MLflow logger finished a median {statistics.median(logger):.2f}s after "
              "run_notebook returned")
        if args.skip_cli:
            return
        cb, co = [], []
        for i in range(args.repeat):
            cb.append(_cli([str(BIN / "papermill"), str(nb), str(nb.parent / "out" / f"c{i}.ipynb"),
                            "-p", "alpha", str(i), "--cwd", str(nb.parent), "--no-progress-bar"],
                           nb.parent))
            co.append(_cli([str(BIN / "nbdeploy"), "run", str(nb), "-p", "alpha", str(i)],
                           nb.parent))
            _wait_last_logged(nb)
        mb, mo = statistics.median(cb), statistics.median(co)
        print(f"command line, median of {args.repeat}: papermill {mb:.2f}s, nbdeploy run "
              f"{mo:.2f}s -> overhead {100 * (mo - mb) / mb:+.1f}%")


if __name__ == "__main__":
    main()
