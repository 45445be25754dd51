"""What every command shares: the `main` group, the consoles, one-line user errors and the
exit statuses."""

from __future__ import annotations

import functools
import sys

import click
from rich.console import Console

from ..errors import DyncdiError

console = Console(stderr=True)
# Tables stay readable when stdout is a file or a pipe (rich would assume 80 columns).
out = Console() if sys.stdout.isatty() else Console(width=200)


def user_errors(fn):
    """Turn DyncdiError into one line on stderr and exit status 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DyncdiError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper


# one flag for every command that merges (sweep, merge): merge.combine.check_rule
remerge_option = click.option(
    "--remerge",
    is_flag=True,
    help="Replace merged groups that were merged under another merge rule.",
)


@click.group()
@click.version_option(package_name="dyncdi-hpc")
def main() -> None:
    """dyncdi: batch BCDI reconstructions (kinematical and dynamical) on Dask clusters."""
    from ..schedule.compile_cache import enable_here

    enable_here()  # before any command imports JAX: programs compiled once are reused


# every sweep that ran but left tasks failed or errored (documented: 0 all done, 2 bad input)
EXIT_TASKS_FAILED = 3
