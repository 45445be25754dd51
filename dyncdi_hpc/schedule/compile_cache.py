"""JAX's persistent compilation cache for drivers and workers.

Each fresh worker process spends most of its first task compiling (8 s of a 9 s first task
for a 32^3 kinematical fit on CPU, 0.2 s for the next); with the cache, a worker whose
programs another process compiled before loads them instead (1.8 s). The cache is a folder of
XLA executables keyed by program, backend and device, safe to share between processes and
nodes: $DYNCDI_JAX_CACHE, else $XDG_CACHE_HOME/dyncdi/jax (~/.cache/dyncdi/jax); set
DYNCDI_JAX_CACHE=off to compile afresh. A JAX_COMPILATION_CACHE_DIR the user set wins.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CACHE_ENV = "DYNCDI_JAX_CACHE"
OFF = ("", "0", "off", "false", "no", "none")
# every program is cached: a task compiles tens of small ones, each under JAX's default 1 s
SETTINGS = {
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
}


def cache_dir(environ: dict[str, str] | None = None) -> Path | None:
    """The compilation cache folder that dyncdi uses, or None when it is switched off."""
    environ = os.environ if environ is None else environ
    if "JAX_COMPILATION_CACHE_DIR" in environ:
        return Path(environ["JAX_COMPILATION_CACHE_DIR"])
    value = environ.get(CACHE_ENV)
    if value is not None:
        return None if value.strip().lower() in OFF else Path(value).expanduser()
    base = environ.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(base) / "dyncdi" / "jax"


def cache_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Environment variables that point a process's JAX at the cache ({} when off)."""
    folder = cache_dir(environ)
    if folder is None:
        return {}
    return {"JAX_COMPILATION_CACHE_DIR": str(folder), **SETTINGS}


def enable_here() -> None:
    """Use the cache in this process (the driver), also when JAX is already imported."""
    env = cache_env()
    for key, value in env.items():
        os.environ.setdefault(key, value)
    if env and "jax" in sys.modules:
        import jax

        jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def worker_env(settings: dict) -> dict[str, str]:
    """A profile's worker_env (dyncdi.cluster.worker_env) over the cache's variables."""
    given = {k: str(v) for k, v in (settings.get("worker_env") or {}).items()}
    return {**cache_env(), **given}
