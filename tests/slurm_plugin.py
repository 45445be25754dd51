"""The tests marked `slurm` get a one-node SLURM: found running, or started by the suite.

When a selected test is marked `slurm` and no SLURM node takes jobs, the suite starts one with
.ci/slurm-up (as root, where Debian's packages can be installed) and stops it with
.ci/slurm-down at the end. Where it cannot, those tests are skipped with the reason and the
command that enables them, unless SLURM is required (CI=true, or --require-slurm): then they
run and fail, naming the fix (tests/schedule/test_slurm.py: require_slurm). A SLURM that was
already running is used and left running.

DYNCDI_SLURM_AUTOSTART=0 keeps the suite from starting one; DYNCDI_SLURM_UP and
DYNCDI_SLURM_DOWN name other start and stop scripts.

Under pytest-xdist every worker collects, so the start is serialised by a file lock (the
first worker starts SLURM, the others find it running), and the one stop is the controller's,
at the end of the whole run: the worker that started it leaves a flag file for it.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# the scripts can be replaced (tests/test_slurm_plugin.py starts a fake SLURM)
UP = Path(os.environ.get("DYNCDI_SLURM_UP", REPO / ".ci" / "slurm-up"))
DOWN = Path(os.environ.get("DYNCDI_SLURM_DOWN", REPO / ".ci" / "slurm-down"))
FLAG_ENV = "DYNCDI_SLURM_STARTED_FLAG"  # set by the controller, inherited by xdist workers
LOCK = Path(tempfile.gettempdir()) / "dyncdi-slurm-start.lock"


def slurm_problem() -> str | None:
    """Why SLURM cannot take jobs here, or None when a node is ready."""
    try:
        run = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20
        )
    except FileNotFoundError:
        return "sinfo is not installed"
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 20 s (is slurmctld running?)"
    if run.returncode != 0:
        return f"sinfo failed: {run.stderr.strip()}"
    states = set(run.stdout.split())
    if not states & {"idle", "mixed", "allocated"}:
        return f"no node takes jobs (node states: {', '.join(sorted(states)) or 'none'})"
    return None


def slurm_required(config: pytest.Config) -> bool:
    """CI=true or --require-slurm: a missing SLURM fails the run instead of skipping."""
    return os.environ.get("CI", "").lower() == "true" or config.getoption("--require-slurm")


def _start() -> str | None:
    """Start SLURM with .ci/slurm-up; None when it runs, else why it could not."""
    if os.environ.get("DYNCDI_SLURM_AUTOSTART", "1") == "0":
        return "DYNCDI_SLURM_AUTOSTART=0"
    if not UP.is_file():
        return f"{UP} is missing"
    try:
        run = subprocess.run([str(UP)], capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return ".ci/slurm-up did not finish in 10 minutes"
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        return f".ci/slurm-up failed: {last}"
    if FLAG_ENV in os.environ:
        Path(os.environ[FLAG_ENV]).touch()
    problem = slurm_problem()
    return None if problem is None else f"started, but {problem}"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-slurm",
        action="store_true",
        help="fail the tests marked slurm when no SLURM runs here (as CI=true does)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller, or a run without xdist
        os.environ[FLAG_ENV] = str(Path(tempfile.mkdtemp(prefix="dyncdi-slurm-")) / "started")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = [item for item in items if item.get_closest_marker("slurm")]
    problem = slurm_problem() if wanted else None
    if problem is None:
        return
    with LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        problem = slurm_problem()
        if problem is None:  # another worker started it meanwhile
            return
        not_started = _start()
    if not_started is None or slurm_required(config):
        return
    reason = (
        f"SLURM is not running here ({problem}) and the suite did not start it "
        f"({not_started}); start it with `sudo .ci/slurm-up`, or set CI=true (or pass "
        "--require-slurm) to make this a failure"
    )
    for item in wanted:
        item.add_marker(pytest.mark.skip(reason=reason))


def pytest_unconfigure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or FLAG_ENV not in os.environ:
        return
    flag = Path(os.environ.pop(FLAG_ENV))
    if flag.exists() and DOWN.is_file():
        subprocess.run([str(DOWN)], capture_output=True, timeout=120)
    flag.unlink(missing_ok=True)
    flag.parent.rmdir()
