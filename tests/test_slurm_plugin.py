"""The suite's handling of SLURM (tests/slurm_plugin.py), run in pytest subprocesses: skipped
with the reason where SLURM cannot run, a failure under CI=true or --require-slurm, started
(and stopped) by the suite where it can be."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

NEEDS_SLURM = """
import subprocess

import pytest


@pytest.mark.slurm
def test_needs_slurm():
    assert "idle" in subprocess.run(["sinfo"], capture_output=True, text=True, check=True).stdout


def test_plain():
    pass
"""


@pytest.fixture
def no_slurm(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A test file with a `slurm` test, and a PATH on which there is no sinfo."""
    pytester.makepyfile(test_x=NEEDS_SLURM)
    pytester.makeini("[pytest]\nmarkers =\n    slurm: needs SLURM\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.delenv("CI", raising=False)
    return bin_dir


def _script(path: Path, text: str) -> Path:
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_missing_slurm_is_skipped_with_the_reason(pytester, no_slurm, monkeypatch):
    monkeypatch.setenv("DYNCDI_SLURM_AUTOSTART", "0")
    result = pytester.runpytest_subprocess("-p", "tests.slurm_plugin", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        ["*SLURM is not running here (sinfo is not installed)*sudo .ci/slurm-up*CI=true*"]
    )


@pytest.mark.parametrize("how", ["CI=true", "--require-slurm"])
def test_missing_slurm_fails_when_required(pytester, no_slurm, monkeypatch, how):
    monkeypatch.setenv("DYNCDI_SLURM_AUTOSTART", "0")
    args = ["-p", "tests.slurm_plugin"]
    if how == "CI=true":
        monkeypatch.setenv("CI", "true")
    else:
        args.append(how)
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=1, failed=1)


def test_a_start_script_that_fails_is_the_reason(pytester, no_slurm, monkeypatch, tmp_path):
    up = _script(tmp_path / "up", "echo 'slurm-up: must run as root' >&2\nexit 1\n")
    monkeypatch.setenv("DYNCDI_SLURM_UP", str(up))
    result = pytester.runpytest_subprocess("-p", "tests.slurm_plugin", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*.ci/slurm-up failed: slurm-up: must run as root*"])


def test_the_suite_starts_slurm_and_stops_it(pytester, no_slurm, monkeypatch, tmp_path):
    """A fake slurm-up puts a sinfo on PATH that reports an idle node; the suite runs the
    slurm test against it, then calls slurm-down, which takes it away."""
    sinfo = no_slurm / "sinfo"
    fake = "#!/bin/sh\\necho idle\\n"
    up = _script(tmp_path / "up", f"printf '{fake}' > {sinfo}\n/bin/chmod +x {sinfo}\n")
    log = tmp_path / "down.log"
    down = _script(tmp_path / "down", f"/bin/rm {sinfo}\necho stopped > {log}\n")
    monkeypatch.setenv("DYNCDI_SLURM_UP", str(up))
    monkeypatch.setenv("DYNCDI_SLURM_DOWN", str(down))
    result = pytester.runpytest_subprocess("-p", "tests.slurm_plugin")
    result.assert_outcomes(passed=2)
    assert (tmp_path / "down.log").read_text() == "stopped\n"
    assert not sinfo.exists()


def test_under_xdist_one_worker_starts_slurm_and_the_controller_stops_it(
    pytester, no_slurm, monkeypatch, tmp_path
):
    """Two xdist workers both collect the slurm test: slurm-up runs once (the second worker
    finds the node the first one started), slurm-down once, after both workers are done."""
    pytester.makepyfile(test_y=NEEDS_SLURM.replace("test_needs_slurm", "test_also_needs_slurm"))
    sinfo = no_slurm / "sinfo"
    fake = "#!/bin/sh\\necho idle\\n"
    ups, downs = tmp_path / "up.log", tmp_path / "down.log"
    up = _script(
        tmp_path / "up",
        f"echo up >> {ups}\nprintf '{fake}' > {sinfo}\n/bin/chmod +x {sinfo}\n",
    )
    down = _script(tmp_path / "down", f"/bin/rm {sinfo}\necho down >> {downs}\n")
    monkeypatch.setenv("DYNCDI_SLURM_UP", str(up))
    monkeypatch.setenv("DYNCDI_SLURM_DOWN", str(down))
    result = pytester.runpytest_subprocess("-p", "tests.slurm_plugin", "-n", "2")
    result.assert_outcomes(passed=4)
    assert ups.read_text() == "up\n" and downs.read_text() == "down\n"
    assert not sinfo.exists()


def test_a_running_slurm_is_used_and_left_running(pytester, no_slurm, monkeypatch, tmp_path):
    sinfo = _script(no_slurm / "sinfo", "echo idle\n")
    down = _script(tmp_path / "down", f"echo stopped > {tmp_path / 'down.log'}\n")
    monkeypatch.setenv("DYNCDI_SLURM_DOWN", str(down))
    result = pytester.runpytest_subprocess("-p", "tests.slurm_plugin")
    result.assert_outcomes(passed=2)
    assert not (tmp_path / "down.log").exists()
    assert os.access(sinfo, os.X_OK)
