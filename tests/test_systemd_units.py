"""
files/systemd/: the units parse cleanly under systemd-analyze verify (with
ExecStart pointed at this installation's console scripts, since verify checks
that the command exists), and keep their hardening.

systemd-analyze comes with the systemd package, which scripts/test.sh
installs as root on Debian when it is missing; without it this test fails
with that advice rather than passing unexamined.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNITS = ("marvinctld", "marvind")


def _unit(name: str) -> str:
    with open(os.path.join(ROOT, "files", "systemd", f"{name}.service")) as f:
        return f.read()


def _service(name: str) -> dict[str, str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(_unit(name))
    return dict(parser["Service"])


@pytest.mark.parametrize("name", UNITS)
def test_hardening(name: str) -> None:
    """
    A dedicated user, a read-only system, no new privileges, private /tmp,
    no capabilities, a restart policy, and the state and log directories.
    """
    service = _service(name)
    assert service["User"] not in ("root", "0") and service["User"] == service["Group"]
    for key, value in {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes", "ProtectHome": "yes",
        "CapabilityBoundingSet": "", "RestartPreventExitStatus": "2",
    }.items():
        assert service[key] == value, key
    assert service["Restart"] in ("on-failure", "always")
    assert service["StateDirectory"] and service["LogsDirectory"] and service["ConfigurationDirectory"]
    assert service["ExecStart"].startswith(f"/opt/marvin/bin/{name} --config /etc/")


def test_verify(tmp_path) -> None:
    """
    systemd-analyze verify finds nothing to say about either unit.
    """
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: run scripts/test.sh as root on Debian (it installs systemd)"
    bindir = os.path.dirname(sys.executable)
    paths = []
    for name in UNITS:
        assert os.access(os.path.join(bindir, name), os.X_OK), f"{name} console script not installed in {bindir}"
        path = tmp_path / f"{name}.service"
        path.write_text(_unit(name).replace("/opt/marvin/bin/", bindir + "/"))
        paths.append(str(path))
    done = subprocess.run([analyze, "verify", "--man=no", *paths], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_verifyNoticesMistakes(tmp_path) -> None:
    """
    The check above would see a mistake: verify complains about a bad value.
    """
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: run scripts/test.sh as root on Debian (it installs systemd)"
    path = tmp_path / "marvinctld.service"
    text = _unit("marvinctld").replace("/opt/marvin/bin/", os.path.dirname(sys.executable) + "/")
    path.write_text(text.replace("ProtectSystem=strict", "ProtectSystem=bogus"))
    done = subprocess.run([analyze, "verify", "--man=no", str(path)], capture_output=True, text=True, timeout=120)
    assert "bogus" in done.stdout + done.stderr
