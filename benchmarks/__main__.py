"""Command line: `python -m benchmarks run [--quick] [--only NAME]`, `python -m benchmarks plot`."""

from __future__ import annotations

from pathlib import Path

import click

from . import BENCHMARKS, PLOTS, WORKFLOW_BENCHMARKS
from .harness import RESULTS_DIR, plot_results, run_benchmarks

results_option = click.option(
    "--results-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=RESULTS_DIR,
    show_default=True,
    help="Folder of the NAME.json results and NAME.png figures.",
)


@click.group()
def cli() -> None:
    """Benchmarks of dyncdi-hpc's kernels; JSON and PNG results in benchmarks/results/."""


@cli.command()
@click.option("--quick", is_flag=True, help="Smaller sizes and fewer repeats.")
@click.option(
    "--only", type=click.Choice(sorted(BENCHMARKS)), metavar="NAME", help="Run one benchmark."
)
@results_option
def run(quick: bool, only: str | None, results_dir: Path) -> None:
    """Run the benchmarks, write one JSON each and print their tables.

    --quick without --only leaves out the workflow benchmarks (thick_crystal, sizes, real_34idc).
    """
    if only:
        selected = {only: BENCHMARKS[only]}
    elif quick:
        selected = {k: v for k, v in BENCHMARKS.items() if k not in WORKFLOW_BENCHMARKS}
        click.echo(f"--quick leaves out {', '.join(WORKFLOW_BENCHMARKS)}: run each with --only")
    else:
        selected = BENCHMARKS
    run_benchmarks(selected, quick=quick, results_dir=results_dir)


@cli.command()
@results_option
def plot(results_dir: Path) -> None:
    """Draw a PNG for every JSON result whose benchmark can be plotted."""
    plot_results(PLOTS, results_dir=results_dir)


if __name__ == "__main__":
    cli(prog_name="python -m benchmarks")
