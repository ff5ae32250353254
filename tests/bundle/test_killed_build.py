"""``nbdeploy build`` killed (SIGKILL) at every stage: never a half bundle, the old one intact.

The build runs as the real CLI in its own process group; the test reads its ``--json``
progress events on stderr and kills the whole group (CLI and kernel) at a chosen point.
After each kill: the target holds the previous bundle, byte for byte (same manifest, its
seal still checks), ``find_bundles`` sees one bundle, and the next build succeeds and
clears what the killed one left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.bundle.conftest import make_notebook

REPO = Path(__file__).resolve().parents[2]
STEP_RUN, STEP_ASSEMBLE, STEP_REGISTER, STEP_FINISH = 2, 3, 4, 5


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _project(root: Path) -> Path:
    import numpy as np
    import pandas as pd

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    df["y"] = (df.a + df.b > 0).astype(int)
    df.to_csv(root / "data.csv", index=False)
    return make_notebook(root / "nb.ipynb",
                         "import pandas as pd\nfrom sklearn.linear_model import LogisticRegression",
                         "df = pd.read_csv('data.csv')\nX = df[['a', 'b']]",
                         "model = LogisticRegression().fit(X, df.y)")


def _build(nb: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nbdeploy", "build", str(nb), "--json", *args],
                          capture_output=True, text=True, env=_env(), cwd=nb.parent, timeout=300)


def _killed_build(nb: Path, step: int, outcome: str = "started", delay: float = 0.0,
                  files: int | None = None) -> list[dict]:
    """Start a build and SIGKILL it (and its kernel) when the event (step, outcome) arrives,
    ``delay`` seconds after it, or once ``files`` files exist in its hidden staging folder."""
    proc = subprocess.Popen([sys.executable, "-m", "nbdeploy", "build", str(nb), "--json", "--force"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env(),
                            cwd=nb.parent, start_new_session=True)
    seen: list[dict] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            seen.append(event)
            if event.get("step") == step and event.get("outcome") == outcome:
                if files is not None:
                    _wait_for_files(nb.parent, files, proc)
                else:
                    time.sleep(delay)
                break
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, f"the build ended on its own before the kill point: {seen}"
    return seen


def _wait_for_files(folder: Path, n: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        staged = [p for d in folder.glob(".nb-bundle.partial-*") for p in d.rglob("*") if p.is_file()]
        if len(staged) >= n:
            return
        time.sleep(0.005)


def _state(bundle: Path) -> tuple[str, dict]:
    from nbdeploy.serve.seal import check_seal

    manifest, report = check_seal(bundle)
    assert not report.problems(strict=True), report.problems(strict=True)
    return (bundle / "nbdeploy.json").read_text(), manifest


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".nb-bundle."))


@pytest.mark.slow
def test_a_killed_build_leaves_the_previous_bundle_and_the_next_build_works(tmp_path: Path) -> None:
    from nbdeploy.bundle.catalog import find_bundles

    nb = _project(tmp_path / "proj")
    first = _build(nb)
    assert first.returncode == 0, first.stderr
    bundle = nb.parent / "nb-bundle"
    before, manifest = _state(bundle)

    points = [(STEP_RUN, "started", 0.0, None), (STEP_RUN, "started", 2.5, None),
              (STEP_ASSEMBLE, "started", 0.0, None), (STEP_ASSEMBLE, "started", 0.0, 20),
              (STEP_REGISTER, "started", 0.0, None), (STEP_REGISTER, "started", 0.15, None),
              (STEP_FINISH, "started", 0.0, None), (STEP_FINISH, "started", 0.04, None)]
    for step, outcome, delay, files in points:
        _killed_build(nb, step, outcome, delay, files)
        after, _ = _state(bundle)  # whole and sealed, whichever it is
        if step < STEP_FINISH and not delay:
            assert after == before, f"killed at step {step} ({files} files staged): the bundle changed"
        # a late kill may land after the swap: then the new bundle is there whole, and is the baseline
        before = after
        found = find_bundles(nb.parent)
        assert [b["path"] for b in found] == [str(bundle)], found

    # the kills after registering left versions without a bundle: listed as such, never promotable
    from nbdeploy.release.moves import promote
    from nbdeploy.release.versions import list_versions

    name = manifest["registry"]["name"]
    orphans = [v.version for v in list_versions(name, nb.parent).versions if v.unfinished]
    assert orphans, "a kill after registering leaves a version whose bundle was never attached"
    with pytest.raises(Exception, match="its build registered it and has not attached the bundle"):
        promote(name, orphans[0], project_dir=nb.parent, force=False)

    again = _build(nb, "--force")
    assert again.returncode == 0, again.stderr
    now, manifest_now = _state(bundle)
    assert int(manifest_now["version"]) > int(manifest["version"])
    assert _leftovers(nb.parent) == [], "the next build clears what killed builds left"
    left = {v.version: v for v in list_versions(name, nb.parent).versions}
    assert not set(orphans) & set(left), "the next build deletes the versions killed builds registered"
    assert not any(v.unfinished for v in left.values()) and left[str(manifest_now["version"])].bundle_artifact
    for version in orphans:
        assert f"deleted {name} version {version} from the registry" in again.stderr


@pytest.mark.slow
def test_a_build_killed_while_the_store_is_created_does_not_break_the_next(tmp_path: Path) -> None:
    """The first build of a project creates the MLflow store in the background: killed then,
    the next build must not meet a half-migrated mlflow.db."""
    nb = _project(tmp_path / "fresh")
    for delay in (0.3, 1.0, 1.8):
        _killed_build(nb, STEP_RUN, "started", delay)
        assert not (nb.parent / "nb-bundle").exists()
    done = _build(nb)
    assert done.returncode == 0, done.stderr
    _state(nb.parent / "nb-bundle")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # gone (reaped); a reuse of it within the test is vanishingly unlikely


def test_sweep_clears_only_what_dead_builders_left_and_puts_a_set_aside_bundle_back(tmp_path: Path) -> None:
    from nbdeploy.bundle.staging import move_into_place, staging_dir, sweep

    target = tmp_path / "nb-bundle"
    dead = _dead_pid()
    abandoned = tmp_path / f".nb-bundle.partial-{dead}-abcd1234"
    abandoned.mkdir()
    live = staging_dir(target)  # this process's: a concurrent build still writing
    set_aside = tmp_path / f".nb-bundle.old-{dead}-efgh5678"  # killed between the two renames
    set_aside.mkdir()
    (set_aside / "nbdeploy.json").write_text("{}")
    other = tmp_path / f".other.partial-{dead}-ijkl9012"  # another target's: not ours to touch
    other.mkdir()

    touched = sweep(target)
    assert sorted(p.name for p in touched) == sorted([abandoned.name, set_aside.name])
    assert not abandoned.exists() and live.is_dir() and other.is_dir()
    assert (target / "nbdeploy.json").read_text() == "{}"  # restored, not deleted

    (live / "nbdeploy.json").write_text('{"new": 1}')
    move_into_place(live, target, force=True)  # the atomic exchange
    assert (target / "nbdeploy.json").read_text() == '{"new": 1}'
    assert not live.exists() and sorted(p.name for p in tmp_path.iterdir()) == [other.name, "nb-bundle"]
