"""SLURM at run time: making a SLURM profile's ``jobqueue: <config_name>:`` block the one
dask-jobqueue reads, the batch script of a worker job, a SLURMCluster whose failed sbatch calls
are recorded (not lost in the event loop), the bounded wait for its first worker (squeue and
scontrol as evidence), and the watcher that replaces worker jobs that ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import dask.config

from ..errors import DyncdiError
from . import compile_cache
from .profiles import ClusterProfile

if TYPE_CHECKING:
    from distributed import Client
    from distributed.security import Security

logger = logging.getLogger(__name__)

# SLURM job states in which a job still holds (or will hold) a worker.
ALIVE_STATES = {"PENDING", "CONFIGURING", "RUNNING", "RESIZING", "SUSPENDED", "REQUEUED"}


def _apply(profile: ClusterProfile) -> None:
    """Make the profile's jobqueue block the one dask-jobqueue reads.

    dask-jobqueue reads ``jobqueue.<config_name>`` whenever it creates a job (also when it
    replaces one later), so the block is set globally, replacing any earlier one whole.
    """
    block = dict(profile.jobqueue)
    worker_env = compile_cache.worker_env(profile.settings)
    exports = [f"export {k}={shlex.quote(str(v))}" for k, v in worker_env.items()]
    block["job-script-prologue"] = [*(block.get("job-script-prologue") or []), *exports]
    dask.config.set({f"jobqueue.{profile.config_name}": block})


def job_script(profile: ClusterProfile) -> str:
    """The batch script each worker job of a SLURM profile runs; submits and starts nothing.

    The same script SLURMCluster.job_script() gives, with a placeholder scheduler address.
    """
    from dask_jobqueue.slurm import SLURMJob

    if profile.kind != "slurm":
        raise DyncdiError("cluster", f"profile {profile.name!r} is not a SLURM profile")
    _apply(profile)
    # SLURMJob creates the log directory; a dry run leaves no folder behind.
    log_dir = profile.jobqueue.get("log-directory")
    new_dirs = []
    if log_dir:
        path = Path(log_dir).absolute()
        new_dirs = [p for p in [path, *path.parents] if not p.exists()]
    try:
        job = SLURMJob(
            "tcp://<scheduler-address>:8786", name="<worker-name>", config_name=profile.config_name
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise DyncdiError(f"{profile.path}: jobqueue.{profile.config_name}", str(exc)) from None
    finally:
        for folder in new_dirs:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
    return job.job_script()


def _sbatch_message(exc: BaseException) -> str:
    """sbatch's own error lines from dask-jobqueue's RuntimeError (or the error itself)."""
    text = str(exc)
    if "stderr:" in text:
        text = text.split("stderr:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__


def _recording_job_class(failures: list[str], started: threading.Event):
    """A SLURMJob that records a failed sbatch instead of raising it inside the event loop.

    A failed submission would otherwise surface only as a traceback logged by the event loop;
    recorded, start_cluster reports sbatch's message and the watcher retries later. The job
    stays without a job id, so closing it is a no-op and the watcher replaces it.
    """
    from dask_jobqueue.slurm import SLURMJob
    from distributed.core import Status

    class RecordingSLURMJob(SLURMJob):
        async def start(self):
            try:
                await super().start()
            except (RuntimeError, OSError) as exc:
                message = _sbatch_message(exc)
                failures.append(message)
                # Before the first worker, start_cluster raises with this message itself.
                log = logger.warning if started.is_set() else logger.debug
                log("sbatch failed for worker %s: %s", self.name, message)
                self.status = Status.running

    return RecordingSLURMJob


def _squeue_argv() -> list[str]:
    return ["squeue", "-h", "-u", getpass.getuser(), "-o", "%i %T"]


def _parse_squeue(out: str) -> dict[str, str]:
    return dict(line.split(None, 1) for line in out.splitlines() if " " in line)


async def _squeue_states() -> dict[str, str] | None:
    """{job id: state} of this user's jobs SLURM still lists; None if squeue did not answer."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *_squeue_argv(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        out, _ = await proc.communicate()
    except OSError:
        return None
    return _parse_squeue(out.decode()) if proc.returncode == 0 else None


def _keep_workers(cluster, target: int | None):
    """Periodic coroutine: forget jobs that ended, and bring a fixed scale back to target.

    dask-jobqueue replaces a lost job only under adapt; with scale(n) a cancelled, failed or
    expired job is gone for good. A job that ended without its worker ever connecting would
    also stay counted as requested forever, under adapt too.
    """
    from distributed.core import Status

    async def check() -> None:
        if cluster.status != Status.running:
            return
        # Snapshot before asking squeue: a job submitted meanwhile is not mistaken for ended.
        jobs = dict(cluster.workers)
        states = await _squeue_states()
        if states is None or cluster.status != Status.running:
            return
        ended = [
            name
            for name, job in jobs.items()
            if job.job_id is None or states.get(str(job.job_id)) not in ALIVE_STATES
        ]
        for name in ended:
            job = cluster.workers.pop(name, None)
            cluster.worker_spec.pop(name, None)  # replaced under a fresh worker name
            if job is not None and job.job_id is not None:
                logger.info("SLURM job %s (worker %s) ended: replacing it", job.job_id, name)
                await job.close()
        lost = set(cluster.worker_spec) - set(cluster.workers)  # left the scheduler
        if target is not None and (ended or lost or len(cluster.worker_spec) < target):
            cluster.scale(target)

    return check


def _job_report(job_ids: list[str]) -> str:
    """State, reason and stderr file of each job, from scontrol (one line)."""
    parts = []
    for job_id in job_ids:
        try:
            argv = ["scontrol", "show", "job", "-o", job_id]
            run = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            parts.append(f"job {job_id}: scontrol gave no answer ({exc})")
            continue
        fields = dict(w.split("=", 1) for w in run.stdout.split() if "=" in w)
        if not fields:
            parts.append(f"job {job_id}: no longer known to SLURM")
            continue
        text = f"job {job_id} {fields.get('JobState')} (reason {fields.get('Reason')})"
        err = fields.get("StdErr")
        if err and Path(err).is_file():
            tail = [ln for ln in Path(err).read_text(errors="replace").splitlines() if ln][-3:]
            text += f", stderr {err}" + (f": {' | '.join(tail)}" if tail else "")
        parts.append(text)
    return "; ".join(parts)


def start_slurm(profile: ClusterProfile, make_security: Callable[[], Security]) -> Client:
    """SLURMCluster from the profile, scaled, with a bounded wait for the first worker.

    With TLS (on by default for SLURM profiles) make_security gives credentials in files of a
    private folder the nodes share (cluster.tls_security), which the job script names.
    """
    from dask_jobqueue import SLURMCluster
    from distributed import Client
    from tornado.ioloop import PeriodicCallback

    settings = profile.settings
    if shutil.which("sbatch") is None:
        raise DyncdiError(
            "cluster",
            f"profile {profile.name!r} needs SLURM, but sbatch is not on PATH",
            "run on a SLURM login node (here: start one with .ci/slurm-up)",
        )
    _apply(profile)
    failures: list[str] = []
    started = threading.Event()
    try:
        # make_security (cluster.tls_security) is called only here, after the sbatch check.
        extra = {"security": make_security()} if settings.get("tls") else {}
        cluster = SLURMCluster(
            config_name=profile.config_name,
            job_cls=_recording_job_class(failures, started),
            **extra,
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise DyncdiError(f"{profile.path}: jobqueue.{profile.config_name}", str(exc)) from None
    client = Client(cluster)
    try:
        adapt = settings.get("adapt")
        target = settings["scale"] if adapt is None else None
        # Under adapt too, ask for at least one job now: whether SLURM accepts the job and a
        # worker connects is then known before any task is submitted.
        cluster.scale(target or max(1, adapt.get("minimum", 0)))
        _wait_for_first_worker(client, cluster, failures, float(settings.get("start_timeout", 120)))
        started.set()
        if adapt is not None:
            cluster.adapt(**adapt)
        interval_ms = 1000 * float(settings.get("watch_interval", 2))
        watcher = PeriodicCallback(_keep_workers(cluster, target), interval_ms)
        cluster.periodic_callbacks["dyncdi-keep-workers"] = watcher  # stopped by close()
        cluster.loop.add_callback(watcher.start)
    except BaseException:
        client.close()
        cluster.close()
        raise
    return client


def _wait_for_first_worker(client, cluster, failures: list[str], timeout: float) -> None:
    """Return once a worker has connected; DyncdiError on an sbatch failure or timeout."""
    t0 = time.monotonic()
    next_check = t0 + 2.0
    while True:
        if failures:
            raise DyncdiError(
                "cluster",
                f"sbatch refused the worker job: {failures[0]}",
                "fix the profile's jobqueue keys (--dry-run prints the job script)",
            )
        if client.nthreads():
            logger.info("first SLURM worker connected after %.1f s", time.monotonic() - t0)
            return
        now = time.monotonic()
        job_ids = [str(j.job_id) for j in list(cluster.workers.values()) if j.job_id]
        if now >= next_check and job_ids:
            next_check = now + 2.0
            try:
                run = subprocess.run(_squeue_argv(), capture_output=True, text=True, timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                run = None  # no answer from squeue is no evidence: keep waiting
            states = _parse_squeue(run.stdout) if run and run.returncode == 0 else None
            if states is not None and not any(states.get(j) in ALIVE_STATES for j in job_ids):
                raise DyncdiError(
                    "cluster",
                    f"every worker job ended before its worker connected: {_job_report(job_ids)}",
                    "read the job's stderr; the profile's python and job-script-prologue run "
                    "on the compute node",
                )
        if now - t0 > timeout:
            detail = _job_report(job_ids) if job_ids else "sbatch has not returned a job id"
            raise DyncdiError(
                "cluster",
                f"no SLURM worker connected within {timeout:g} s: {detail}",
                "check the partition and limits (squeue, sinfo) or raise start_timeout",
            )
        time.sleep(0.2)
