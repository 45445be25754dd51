"""Cluster profiles, found, layered and validated: a profile is a dask.config YAML file with a
``dyncdi: cluster:`` block (which kind of cluster, how many workers, retries) and, for SLURM, a
complete ``jobqueue: <config_name>:`` block in dask-jobqueue's own format. A profile's settings
are, lowest priority first: the profile file, dask's config files and ``DASK_*`` environment
variables, then ``--set`` overrides. The profiles shipped with dyncdi are package data
(``dyncdi_hpc/cluster_configs``), found after $DYNCDI_CLUSTER_CONFIGS and ./cluster_configs.
"""

from __future__ import annotations

import copy
import importlib.resources
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import dask.config
import yaml
from dask.utils import parse_timedelta

from ..config import read_yaml
from ..errors import DyncdiError

PROFILE_DIRS_ENV = "DYNCDI_CLUSTER_CONFIGS"
KINDS = ("local", "slurm")
# Keys of dyncdi.cluster, by kind; anything else in a profile or a --set is a typo.
COMMON_KEYS = {"kind", "retries", "worker_env", "tls"}
LOCAL_KEYS = COMMON_KEYS | {"pin_cores"}
SLURM_KEYS = COMMON_KEYS | {"config_name", "scale", "adapt", "start_timeout", "watch_interval"}
# Keyword arguments of Cluster.adapt (distributed.deploy.Adaptive) a profile may give.
ADAPT_KEYS = {"minimum", "maximum", "interval", "wait_count", "target_duration"}


def packaged_profile_dir() -> Path:
    """The folder of the profiles shipped inside the dyncdi_hpc package."""
    # The package is installed as files (not zip-safe), so the resource is a real folder.
    return Path(str(importlib.resources.files("dyncdi_hpc") / "cluster_configs"))


def profile_dirs() -> list[Path]:
    """Where profiles are looked up: $DYNCDI_CLUSTER_CONFIGS, ./cluster_configs, the package's."""
    dirs = [Path(p) for p in os.environ.get(PROFILE_DIRS_ENV, "").split(os.pathsep) if p]
    dirs.append(Path.cwd() / "cluster_configs")
    dirs.append(packaged_profile_dir())
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


# the first part of a --set key that belongs to the cluster profile; any other first part
# must be a key of the sweep spec
PROFILE_KEYS = SLURM_KEYS | LOCAL_KEYS | {"local", "slurm"}


def split_overrides(
    overrides: tuple[str, ...], spec_keys: set[str]
) -> tuple[tuple[tuple[str, object], ...], tuple[str, ...]]:
    """--set KEY=VALUE items split into sweep-spec (key, value) pairs and profile items;
    a key that is neither is refused, with the same message whatever the profile."""
    spec, profile = [], []
    for text in overrides:
        key, value = parse_override(text)
        top = key.split(".")[0]
        if top in PROFILE_KEYS:
            profile.append(text)
        elif top in spec_keys:
            spec.append((key, value))
        else:
            hint = f"; for a reconstruction parameter write base.{key}" if "." not in key else ""
            raise DyncdiError(
                f"--set {key}",
                "neither a sweep-spec key nor a cluster-profile key",
                f"use a sweep-spec key ({', '.join(sorted(spec_keys))}, dotted: base.lr_phase) "
                f"or a profile key ({', '.join(sorted(PROFILE_KEYS))}, dotted: local.n_workers)"
                + hint,
            )
    return tuple(spec), tuple(profile)


def local_cluster_keys() -> set[str]:
    """Keyword arguments a LocalCluster accepts: its own, its nannies' and their workers'."""
    import inspect

    from distributed import LocalCluster, Nanny, Worker

    names = set()
    for cls in (LocalCluster, Nanny, Worker):
        names |= {
            n
            for n, p in inspect.signature(cls).parameters.items()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        }
    return names


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
    path, data, raw = _read_profile(name)
    parsed = [parse_override(o) for o in overrides]
    resolved = _resolve_layers(data, parsed)
    settings = resolved["dyncdi"]["cluster"]
    kind = settings.get("kind")
    if kind not in KINDS:
        raise DyncdiError(
            f"{path}: dyncdi.cluster.kind", f"unknown kind {kind!r}", f"use one of {KINDS}"
        )
    if kind == "local":
        _check_local(path, settings, parsed)
        return ClusterProfile(name=name, path=path, kind=kind, settings=settings)
    _check_slurm_keys(path, raw, parsed)
    # workers on other nodes: the scheduler must not take code from anyone who can reach it
    settings.setdefault("tls", True)
    config_name = settings.get("config_name") or name
    block = _slurm_block(path, config_name, resolved, parsed)
    _check_slurm(path, config_name, settings, block)
    return ClusterProfile(name=name, path=path, kind=kind, settings=settings, jobqueue=block)


def _read_profile(name: str) -> tuple[Path, dict, dict]:
    """(path, whole file, its dyncdi.cluster block) of a profile that says its kind."""
    path = find_profile(name)
    data = read_yaml(path, f"cluster profile {name!r}")
    raw = (data.get("dyncdi") or {}).get("cluster")
    if not isinstance(raw, dict) or "kind" not in raw:
        raise DyncdiError(
            f"{path}: dyncdi.cluster.kind",
            "the profile does not say which kind of cluster it is",
            f"add dyncdi: cluster: kind: one of {', '.join(KINDS)}",
        )
    return path, data, raw


def _resolve_layers(data: dict, parsed: list[tuple[str, object]]) -> dict:
    """The profile with dask's config files, DASK_* env vars and the plain --set keys on top."""
    # Resolve from the profile, dask's config files and env (dask.config.collect, not the
    # global config), then --set: a profile loaded twice in one process, or after another
    # profile, gets the same settings.
    resolved: dict = copy.deepcopy(data)
    dask.config.update(resolved, dask.config.collect())
    plain = {f"dyncdi.cluster.{k}": v for k, v in parsed if not k.startswith("slurm.")}
    dask.config.set(plain, config=resolved)
    return resolved


def _check_local(path: Path, settings: dict, parsed: list[tuple[str, object]]) -> None:
    """Validate a local profile's dyncdi.cluster block and its --set keys."""
    if any(k.startswith("slurm.") for k, _ in parsed):
        raise DyncdiError("--set", "slurm.* keys need a SLURM profile", "drop them")
    if not isinstance(settings.get("local"), dict):
        raise DyncdiError(
            f"{path}: dyncdi.cluster.local",
            "missing",
            "give the LocalCluster settings (n_workers, threads_per_worker, ...)",
        )
    allowed = local_cluster_keys()
    given = {k.split(".")[1] for k, _ in parsed if k.startswith("local.")}
    for key in sorted(set(settings["local"]) - allowed):
        where = f"--set local.{key}" if key in given else f"{path}: dyncdi.cluster.local.{key}"
        raise DyncdiError(
            where,
            "not a keyword of distributed.LocalCluster (nor of its nannies and workers)",
            "check its spelling: e.g. n_workers, threads_per_worker, memory_limit, "
            "dashboard_address",
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


def _check_slurm_keys(path: Path, raw: dict, parsed: list[tuple[str, object]]) -> None:
    """Refuse keys of a SLURM profile's dyncdi.cluster block (file or --set) it does not know."""
    unknown = sorted(set(raw) - SLURM_KEYS) + sorted(
        k.split(".")[0] for k, _ in parsed if k.split(".")[0] not in SLURM_KEYS | {"slurm"}
    )
    if unknown:
        raise DyncdiError(
            f"{path}: dyncdi.cluster",
            f"unknown key(s) {', '.join(unknown)}",
            f"use {', '.join(sorted(SLURM_KEYS))}; jobqueue keys go under jobqueue: or slurm.KEY",
        )


def _slurm_block(
    path: Path, config_name: str, resolved: dict, parsed: list[tuple[str, object]]
) -> dict:
    """The complete jobqueue.<config_name> block, slurm.KEY overrides applied, paths expanded."""
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
    return block


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
    _check_lifetime(where, block)


def _check_lifetime(where: str, block: dict) -> None:
    """Workers' --lifetime (+ --lifetime-stagger) must end before the job's walltime."""
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
