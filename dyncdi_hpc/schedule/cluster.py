"""Cluster profiles (YAML in dask.config's format) and the clusters they start."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import dask.config
import yaml

from ..config import read_yaml
from ..errors import DyncdiError

PROFILE_DIRS_ENV = "DYNCDI_CLUSTER_CONFIGS"
KINDS = ("local",)


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
    """A resolved profile: its kind and the settings under dyncdi.cluster."""

    name: str
    path: Path
    kind: str
    settings: dict


def parse_override(text: str) -> tuple[str, object]:
    """'local.n_workers=4' -> ('dyncdi.cluster.local.n_workers', 4) (value parsed as YAML)."""
    if "=" not in text:
        raise DyncdiError("--set", f"{text!r} is not KEY=VALUE", "write e.g. local.n_workers=4")
    key, value = text.split("=", 1)
    return f"dyncdi.cluster.{key.strip()}", yaml.safe_load(value)


def load_profile(name: str, overrides: tuple[str, ...] = ()) -> ClusterProfile:
    """Read a profile, merge it into dask.config under env/user settings, apply overrides."""
    path = find_profile(name)
    data = read_yaml(path, f"cluster profile {name!r}")
    cluster = data.get("dyncdi", {}).get("cluster")
    if not isinstance(cluster, dict) or "kind" not in cluster:
        raise DyncdiError(
            f"{path}: dyncdi.cluster.kind",
            "the profile does not say which kind of cluster it is",
            f"add dyncdi: cluster: kind: one of {', '.join(KINDS)}",
        )
    dask.config.update_defaults(data)
    if overrides:
        dask.config.set(dict(parse_override(o) for o in overrides))
    settings = dask.config.get("dyncdi.cluster")
    kind = settings["kind"]
    if kind not in KINDS:
        raise DyncdiError(f"{path}: dyncdi.cluster.kind", f"unknown kind {kind!r}", f"use {KINDS}")
    if kind == "local" and not isinstance(settings.get("local"), dict):
        raise DyncdiError(
            f"{path}: dyncdi.cluster.local",
            "missing",
            "give the LocalCluster settings (n_workers, threads_per_worker, ...)",
        )
    return ClusterProfile(name=name, path=path, kind=kind, settings=settings)


def start_cluster(profile: ClusterProfile):
    """Start the profile's cluster; returns a distributed.Client connected to it."""
    from distributed import Client, LocalCluster

    kwargs = dict(profile.settings["local"])
    worker_env = {k: str(v) for k, v in profile.settings.get("worker_env", {}).items()}
    if worker_env and kwargs.get("processes", True):
        kwargs["env"] = {**worker_env, **kwargs.get("env", {})}
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
