"""What a store holds: `dyncdi status`, `merge`, `report`, `export`."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table

from ..errors import DyncdiError
from .base import EXIT_TASKS_FAILED, main, out, remerge_option, user_errors

RICH_ROWS = 200


def _plain_table(title: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """A table as aligned plain text (fast for many rows)."""
    cells = [tuple(str(v) for v in r) for r in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = [title, "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    click.echo("\n".join(line.rstrip() for line in lines))


@main.command()
@click.argument("store_path", metavar="STORE", type=click.Path(path_type=Path))
@click.option(
    "--verify", is_flag=True, help="Read every result's arrays and check their checksums."
)
@user_errors
def status(store_path, verify) -> None:
    """Table of the tasks in a store: done/failed/damaged, error, loss, wall time, reason."""
    from ..store.summary import merged_line, multi_vs_truth_text, status_rows
    from ..store.zarr_store import Store

    store = Store.open(store_path)
    columns, rows, counts = status_rows(store, verify=verify)
    if len(rows) > RICH_ROWS:  # a drawn table of thousands of rows takes seconds
        _plain_table(str(store.path), columns, rows)
    else:
        table = Table(title=str(store.path))
        for col in columns:
            table.add_column(col)
        for r in rows:
            table.add_row(*[str(v) for v in r])
        out.print(table)
    out.print(", ".join(f"{k}: {v}" for k, v in counts.items()))
    for key in store.merged_keys():
        out.print(merged_line(key, store.merged_attrs(key)))
    for name in store.multi_names():
        out.print(f"multi/{name}{multi_vs_truth_text(store.multi_attrs(name))}")
    if verify and counts.get("damaged"):
        out.print("damaged groups are quarantined and recomputed by the next 'dyncdi sweep'")
        sys.exit(EXIT_TASKS_FAILED)


@main.command()
@click.argument("store_path", metavar="STORE", type=click.Path(path_type=Path))
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(path_type=Path),
    help="Sweep spec whose merge rule to use (default: the rule recorded in the store).",
)
@remerge_option
@user_errors
def merge(store_path, spec_path, remerge) -> None:
    """Select, align and merge the best results of each dataset and model."""
    from ..config import MergeRule, load_sweep
    from ..merge.combine import check_rule, merge_store
    from ..store.summary import merged_line
    from ..store.zarr_store import Store

    store = Store.open(store_path)
    rule = load_sweep(spec_path).merge if spec_path else MergeRule(**store.merge_rule())
    check_rule(store, rule, remerge)
    before = set(store.quarantined())
    keys = merge_store(store, rule)
    for entry, why in sorted(store.quarantined().items()):
        if entry not in before:
            out.print(f"quarantined: {why} (moved to {store.path / '_quarantine' / entry})")
    if not keys:
        raise DyncdiError("merge", "no completed results in the store", "run a sweep first")
    for key in keys:
        out.print(merged_line(key, store.merged_attrs(key)))
    store.consolidate()


@main.command()
@click.argument("store_path", metavar="STORE", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for the figures and index.html.",
)
@user_errors
def report(store_path, out_dir) -> None:
    """Write PNG figures and an HTML page for a store."""
    from ..report.page import write_report
    from ..store.zarr_store import Store

    page = write_report(Store.open(store_path), out_dir)
    out.print(f"report: {page}")


@main.command()
@click.argument("store_path", metavar="STORE", type=click.Path(path_type=Path))
@click.option(
    "--vtk", "vtk_dir", type=click.Path(path_type=Path), help="Folder for .vti/.vts files."
)
@click.option("--cxi", "cxi_path", type=click.Path(path_type=Path), help="CXI file to write.")
@click.option("--key", "keys", multiple=True, help="Merged group(s) to export (default: all).")
@click.option("--voxel-nm", type=float, help="Orthogonal-grid voxel size (default: finest step).")
@click.option(
    "--frame",
    type=click.Choice(["lab", "crystal", "sample"]),
    default="lab",
    show_default=True,
    help="Frame of the exported grids.",
)
@user_errors
def export(store_path, vtk_dir, cxi_path, keys, voxel_nm, frame) -> None:
    """Export merged results (lab, crystal or sample frame): VTK (ParaView) and/or CXI."""
    from ..report.export import write_cxi, write_vtk
    from ..store.zarr_store import Store

    if not vtk_dir and not cxi_path:
        raise DyncdiError("export", "nothing to write", "give --vtk DIR and/or --cxi FILE")
    store = Store.open(store_path)
    if vtk_dir:
        for path in write_vtk(store, vtk_dir, list(keys) or None, voxel_nm, frame):
            out.print(f"vtk: {path}")
    if cxi_path:
        out.print(f"cxi: {write_cxi(store, cxi_path, list(keys) or None, voxel_nm, frame)}")
