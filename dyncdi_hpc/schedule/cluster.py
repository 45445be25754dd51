"""Cluster profiles (YAML in dask.config's format) and the clusters they start.

A profile is a dask.config YAML file with a ``dyncdi: cluster:`` block (which kind of cluster,
how many workers, retries) and, for SLURM, a complete ``jobqueue: <config_name>:`` block in
dask-jobqueue's own format. A profile's settings are, lowest priority first: the profile file,
dask's config files and ``DASK_*`` environment variables, then ``--set`` overrides.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import getpass
import importlib.resources
import logging
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import dask.config
import yaml
from dask.utils import parse_timedelta

from ..config import read_yaml
from ..errors import DyncdiError

logger = logging.getLogger(__name__)

PROFILE_DIRS_ENV = "DYNCDI_CLUSTER_CONFIGS"
KINDS = ("local", "slurm")
# Keys of dyncdi.cluster, by kind; anything else in a profile or a --set is a typo.
COMMON_KEYS = {"kind", "retries", "worker_env", "tls"}
SLURM_KEYS = COMMON_KEYS | {"config_name", "scale", "adapt", "start_timeout", "watch_interval"}
# Keyword arguments of Cluster.adapt (distributed.deploy.Adaptive) a profile may give.
ADAPT_KEYS = {"minimum", "maximum", "interval", "wait_count", "target_duration"}
# SLURM job states in which a job still holds (or will hold) a worker.
ALIVE_STATES = {"PENDING", "CONFIGURING", "RUNNING", "RESIZING", "SUSPENDED", "REQUEUED"}


def profile_dirs() -> list[Path]:
    """Where profiles are looked up: $DYNCDI_CLUSTER_CONFIGS, ./cluster_configs, the repo's."""
    dirs = [Path(p) for p in os.environ.get(PROFILE_DIRS_ENV, "").split(os.pathsep) if p]
    dirs.append(Path.cwd() / "cluster_configs")
    dirs.append(Path(__file__).resolve().parents[2] / "cluster_configs")
    return dirs


def find_profile(name: str) -> Path:
    """Path of a profile given by file path or by name (NAME.yaml in a profile folder)."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    for folder in profile_dirs():
        path = folder / f"{name}.yaml"
        if path.is_file():
            return path
    known = sorted({p.stem for d in profile_dirs() if d.is_dir() for p in d.glob("*.yaml")})
    raise DyncdiError(
        "cluster",
        f"unknown cluster profile {name!r}",
        f"use one of {', '.join(known) or '(none found)'} or a path to a profile YAML",
    )


@dataclass(frozen=True)
class ClusterProfile:
    """A resolved profile: its kind, the settings under dyncdi.cluster, its jobqueue block."""

    name: str
    path: Path
    kind: str
    settings: dict
    jobqueue: dict = field(default_factory=dict)  # jobqueue.<config_name>, complete (slurm)

    @property
    def config_name(self) -> str:
        """Name of the profile's block under dask-jobqueue's ``jobqueue:`` config."""
        return self.settings.get("config_name") or self.name


def builtin_slurm_keys() -> set[str]:
    """Every key of dask-jobqueue's own ``jobqueue: slurm:`` defaults (what SLURMCluster reads)."""
    text = (importlib.resources.files("dask_jobqueue") / "jobqueue.yaml").read_text()
    return set(yaml.safe_load(text)["jobqueue"]["slurm"])


def _canon(key: str) -> str:
    return key.replace("_", "-")


def parse_override(text: str) -> tuple[str, object]:
    """'local.n_workers=4' -> ('local.n_workers', 4): key under dyncdi.cluster, value as YAML."""
    if "=" not in text:
        raise DyncdiError("--set", f"{text!r} is not KEY=VALUE", "write e.g. local.n_workers=4")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def load_profile(name: str, overrides: tuple[str, ...] = ()) -> ClusterProfile:
    """Read and validate a profile, layer dask config files, DASK_* env vars and --set on it.

    ``--set KEY=VALUE`` sets ``dyncdi.cluster.KEY``; for a SLURM profile ``slurm.KEY`` sets
    ``jobqueue.<config_name>.KEY`` (e.g. ``slurm.cores=1``, ``slurm.queue=debug``).
    Raises DyncdiError for an unknown profile, kind or key, or a SLURM block missing keys.
    """
    path = find_profile(name)
    data = read_yaml(path, f"cluster profile {name!r}")
    raw = (data.get("dyncdi") or {}).get("cluster")
    if not isinstance(raw, dict) or "kind" not in raw:
        raise DyncdiError(
            f"{path}: dyncdi.cluster.kind",
            "the profile does not say which kind of cluster it is",
            f"add dyncdi: cluster: kind: one of {', '.join(KINDS)}",
        )
    # Resolve from the profile, dask's config files and env (dask.config.collect, not the
    # global config), then --set: a profile loaded twice in one process, or after another
    # profile, gets the same settings.
    resolved: dict = copy.deepcopy(data)
    dask.config.update(resolved, dask.config.collect())
    parsed = [parse_override(o) for o in overrides]
    plain = {f"dyncdi.cluster.{k}": v for k, v in parsed if not k.startswith("slurm.")}
    dask.config.set(plain, config=resolved)
    settings = resolved["dyncdi"]["cluster"]
    kind = settings.get("kind")
    if kind not in KINDS:
        raise DyncdiError(
            f"{path}: dyncdi.cluster.kind", f"unknown kind {kind!r}", f"use one of {KINDS}"
        )
    if kind == "local":
        if any(k.startswith("slurm.") for k, _ in parsed):
            raise DyncdiError("--set", "slurm.* keys need a SLURM profile", "drop them")
        if not isinstance(settings.get("local"), dict):
            raise DyncdiError(
                f"{path}: dyncdi.cluster.local",
                "missing",
                "give the LocalCluster settings (n_workers, threads_per_worker, ...)",
            )
        if settings["local"].get("lifetime_restart"):
            # distributed 2026.8: a nanny that restarts a worker at the end of its lifetime
            # leaves the new worker without tasks and counts the restart as a death, so the
            # sweep stalls or its tasks fail (measured: 1 task in 15 s after the first restart)
            raise DyncdiError(
                f"{path}: dyncdi.cluster.local.lifetime_restart",
                "a LocalCluster whose workers restart at the end of their lifetime stalls",
                "leave lifetime and lifetime_restart out of local profiles; on SLURM, "
                "worker-extra-args --lifetime retires workers and the driver replaces their jobs",
            )
        return ClusterProfile(name=name, path=path, kind=kind, settings=settings)

    unknown = sorted(set(raw) - SLURM_KEYS) + sorted(
        k.split(".")[0] for k, _ in parsed if k.split(".")[0] not in SLURM_KEYS | {"slurm"}
    )
    if unknown:
        raise DyncdiError(
            f"{path}: dyncdi.cluster",
            f"unknown key(s) {', '.join(unknown)}",
            f"use {', '.join(sorted(SLURM_KEYS))}; jobqueue keys go under jobqueue: or slurm.KEY",
        )
    config_name = settings.get("config_name") or name
    block = ((resolved.get("jobqueue") or {}).get(config_name)) or {}
    block = {_canon(k): v for k, v in block.items()}
    required = builtin_slurm_keys()
    for key, value in parsed:
        if key.startswith("slurm."):
            top = _canon(key.split(".")[1])
            if top not in required:
                raise DyncdiError(
                    f"--set {key}",
                    f"{top!r} is not a dask-jobqueue SLURM key",
                    f"use one of {', '.join(sorted(required))}",
                )
            dask.config.set({".".join([top, *key.split(".")[2:]]): value}, config=block)
    missing = sorted(required - set(block))
    if missing:
        raise DyncdiError(
            f"{path}: jobqueue.{config_name}",
            f"missing {', '.join(missing)} (a named dask-jobqueue profile must define every key)",
            "copy the full block from cluster_configs/site-template.yaml",
        )
    if block["python"] is None:
        block["python"] = sys.executable  # workers run the driver's interpreter and venv
    if block["log-directory"]:
        # dask-jobqueue and sbatch take the path literally: a "~" would become a folder "~".
        block["log-directory"] = os.path.expanduser(str(block["log-directory"]))
    _check_slurm(path, config_name, settings, block)
    return ClusterProfile(name=name, path=path, kind=kind, settings=settings, jobqueue=block)


def _seconds(walltime: str) -> float:
    """SLURM walltime ([D-]HH:MM:SS, MM:SS or minutes) in seconds."""
    days, _, clock = str(walltime).rpartition("-")
    parts = [float(p) for p in clock.split(":")]
    if len(parts) == 1:
        parts = [0.0, parts[0], 0.0]
    elif len(parts) == 2:
        parts = [0.0, *parts]
    hours, minutes, seconds = parts
    return (float(days or 0) * 24 + hours) * 3600 + minutes * 60 + seconds


def _arg(args: list, flag: str) -> str | None:
    args = [str(a) for a in args]
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def _check_slurm(path: Path, config_name: str, settings: dict, block: dict) -> None:
    """Validate a SLURM profile once, before anything is submitted."""
    where = f"{path}: jobqueue.{config_name}"
    for key in ("cores", "memory", "walltime"):
        if block.get(key) in (None, ""):
            raise DyncdiError(f"{where}.{key}", "must be set", f"give the job's {key}")
    scale, adapt = settings.get("scale"), settings.get("adapt")
    if (scale is None) == (adapt is None):
        raise DyncdiError(
            f"{path}: dyncdi.cluster",
            "give exactly one of scale (a fixed number of workers) and adapt",
            "e.g. scale: 2, or adapt: {minimum: 1, maximum: 8}",
        )
    if scale is not None and (not isinstance(scale, int) or scale < 1):
        raise DyncdiError(f"{path}: dyncdi.cluster.scale", f"{scale!r}", "a whole number >= 1")
    if adapt is not None:
        if not isinstance(adapt, dict) or set(adapt) - ADAPT_KEYS:
            raise DyncdiError(
                f"{path}: dyncdi.cluster.adapt",
                f"{adapt!r}",
                f"a mapping with keys among {', '.join(sorted(ADAPT_KEYS))}",
            )
        lo, hi = adapt.get("minimum", 0), adapt.get("maximum")
        if not isinstance(hi, int) or not isinstance(lo, int) or not 0 <= lo <= hi or hi < 1:
            raise DyncdiError(
                f"{path}: dyncdi.cluster.adapt",
                f"{adapt!r}",
                "give whole numbers 0 <= minimum <= maximum, maximum >= 1",
            )
    try:
        wall = _seconds(block["walltime"])
        lifetime = _arg(block["worker-extra-args"] or [], "--lifetime")
        stagger = _arg(block["worker-extra-args"] or [], "--lifetime-stagger") or "0s"
        if lifetime is not None:
            end = parse_timedelta(lifetime) + parse_timedelta(stagger)
            if end >= wall:
                raise DyncdiError(
                    f"{where}.worker-extra-args",
                    f"--lifetime {lifetime} + --lifetime-stagger {stagger} is not below the "
                    f"walltime {block['walltime']}",
                    "workers must retire before SLURM kills the job: shorten --lifetime",
                )
    except (ValueError, TypeError) as exc:
        raise DyncdiError(where, f"cannot read walltime/lifetime: {exc}", "fix them") from None


def _apply(profile: ClusterProfile) -> None:
    """Make the profile's jobqueue block the one dask-jobqueue reads.

    dask-jobqueue reads ``jobqueue.<config_name>`` whenever it creates a job (also when it
    replaces one later), so the block is set globally, replacing any earlier one whole.
    """
    block = dict(profile.jobqueue)
    worker_env = profile.settings.get("worker_env") or {}
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


def tls_security():
    """Temporary self-signed TLS credentials for scheduler, workers and this client.

    Only processes given these credentials (the workers this driver starts) can join or
    connect: with `tls: true` in a profile nobody else on a shared cluster can submit work to
    the scheduler or read results off the wire.
    """
    from distributed.security import Security

    try:
        return Security.temporary()
    except ImportError as exc:
        raise DyncdiError(
            "tls", f"TLS needs the cryptography package ({exc})", "pip install cryptography"
        ) from None


def start_cluster(profile: ClusterProfile):
    """Start the profile's cluster; returns a distributed.Client connected to it."""
    if profile.kind == "slurm":
        return _start_slurm(profile)
    from distributed import Client, LocalCluster

    kwargs = dict(profile.settings["local"])
    worker_env = {k: str(v) for k, v in profile.settings.get("worker_env", {}).items()}
    if worker_env and kwargs.get("processes", True):
        kwargs["env"] = {**worker_env, **kwargs.get("env", {})}
    if profile.settings.get("tls"):
        kwargs.update(security=tls_security(), protocol="tls://")
    try:
        cluster = LocalCluster(**kwargs)
    except TypeError as exc:
        raise DyncdiError(
            f"{profile.path}: dyncdi.cluster.local", str(exc), "remove or fix that key"
        ) from None
    except Exception as exc:
        raise DyncdiError(
            "cluster", f"the {profile.name!r} cluster did not start: {exc}", "check the profile"
        ) from None
    return Client(cluster)


# ---------------------------------------------------------------------------------------------
# SLURM


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


def _start_slurm(profile: ClusterProfile):
    """SLURMCluster from the profile, scaled, with a bounded wait for the first worker."""
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
        extra = {"security": tls_security()} if settings.get("tls") else {}
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
