"""containers.conf settings: checked and written explicitly, other settings kept."""

from __future__ import annotations

import resource
import tomllib
from pathlib import Path

import pytest

from nbdeploy.base.errors import ContainerError
from nbdeploy.container.config import (
    CONTAINERS_CONF,
    HostSettings,
    apply_host_config,
    check_host_config,
    host_hard_limits,
)
from nbdeploy.frontends.cli import main


def test_limits_never_exceed_the_hosts_hard_limits():
    limits = host_hard_limits()
    assert set(limits) == {"nofile", "nproc"}
    for name, rlim in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        hard = resource.getrlimit(rlim)[1]
        assert limits[name] <= hard or hard == resource.RLIM_INFINITY


def test_check_then_apply_keeps_other_settings(tmp_path: Path):
    conf = tmp_path / "containers.conf"
    conf.write_text('[engine]\nruntime = "crun"\nnum_locks = 2048\n\n'
                    '[network]\nnetwork_backend = "netavark"\n')
    settings = HostSettings(ulimits={"nofile": 1024, "nproc": 512})
    before = check_host_config(settings, conf)
    assert not before.ok
    assert before.differences["engine.runtime"] == ("crun", "runc")
    assert "nbdeploy container-setup" in before.text()
    assert conf.read_text().startswith("[engine]")  # a check writes nothing

    after = apply_host_config(settings, conf)
    assert after.written and "engine.runtime" in after.text()
    doc = tomllib.loads(conf.read_text())
    assert doc["engine"] == {"runtime": "runc", "num_locks": 2048, "cgroup_manager": "cgroupfs",
                             "events_logger": "file"}
    assert doc["network"] == {"network_backend": "netavark"}
    assert doc["containers"]["default_ulimits"] == ["nofile=1024:1024", "nproc=512:512"]
    assert check_host_config(settings, conf).ok
    assert not apply_host_config(settings, conf).written  # idempotent


def test_unreadable_config_is_a_clear_error(tmp_path: Path):
    conf = tmp_path / "containers.conf"
    conf.write_text("[engine\nruntime=")
    with pytest.raises(ContainerError, match="cannot read"):
        check_host_config(HostSettings(ulimits={}), conf)


def test_missing_runtime_is_named(tmp_path: Path):
    with pytest.raises(ContainerError, match="'no-such-runtime' is not installed"):
        apply_host_config(HostSettings(runtime="no-such-runtime", ulimits={}),
                          tmp_path / "containers.conf")


def test_cli_check_and_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    conf = tmp_path / "containers.conf"
    assert main(["container-setup", "--check", "--path", str(conf)]) == 1
    assert "differ" in capsys.readouterr().out and not conf.exists()
    assert main(["container-setup", "--path", str(conf)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["container-setup", "--check", "--path", str(conf)]) == 0


def test_this_host_is_set_up():
    """.ci/setup applies the settings; the container tests below rely on them."""
    report = check_host_config(path=CONTAINERS_CONF)
    assert report.ok, report.text()
