"""The dyncdi command line: each command parses, calls one function, prints.

Commands by module: run (sweep), data (simulate, load, beamlines), store (status, merge,
report, export), physics (the calculator), cluster (profiles,
config show); base holds the `main` group they hang on.
"""

from . import cluster, data, physics, run, store  # noqa: F401  (registers the commands on main)
from .base import EXIT_TASKS_FAILED, main

__all__ = ["EXIT_TASKS_FAILED", "main"]
