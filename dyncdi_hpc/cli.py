"""The dyncdi command line: each command parses, calls one function, prints."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from .errors import DyncdiError

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


@click.group()
@click.version_option(package_name="dyncdi-hpc")
def main() -> None:
    """dyncdi: batch BCDI reconstructions (kinematical and dynamical) on Dask clusters."""


def _sweep_table(the_plan, axes: list[str]) -> Table:
    done, failed = set(the_plan.done), set(the_plan.failed)
    table = Table(title=f"{len(the_plan.tasks)} tasks")
    for col in ("task", "dataset", "seed", *axes, "state"):
        table.add_column(col)
    for t in the_plan.tasks:
        tid = t.task_id
        state = "done" if tid in done else "failed" if tid in failed else "pending"
        values = [str(getattr(t.params, a)) for a in axes]
        table.add_row(tid, t.dataset, str(t.seed), *values, state)
    return table


@main.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option("--store", type=click.Path(path_type=Path), help="Zarr store (overrides the spec).")
@click.option(
    "--cluster", "cluster", help="Cluster profile name or YAML path (overrides the spec)."
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a sweep-spec key (base.lr_phase=1e-3, sweep.seed=8) or a cluster-profile "
    "key (local.n_workers=1, slurm.walltime=02:00:00, scale=8); repeatable.",
)
@click.option("--dry-run", is_flag=True, help="Print the task table and run nothing.")
@click.option("--retry-failed", is_flag=True, help="Recompute tasks that failed before.")
@click.option(
    "--report",
    "report_dir",
    type=click.Path(path_type=Path),
    help="Report folder (default: STORE-report beside the store).",
)
@user_errors
def sweep(spec_path, store, cluster, overrides, dry_run, retry_failed, report_dir) -> None:
    """Run every reconstruction of a sweep SPEC (YAML), merge the best, write a report.

    Exit status: 0 every task done; 2 bad input (one line on stderr, nothing submitted); 3 the
    sweep ran but some tasks failed or errored (listed; --retry-failed recomputes them).
    """
    from .config import SweepSpec, load_sweep
    from .schedule.profiles import split_overrides
    from .schedule.run import run_sweep

    spec_overrides, overrides = split_overrides(overrides, set(SweepSpec.model_fields))
    spec = load_sweep(spec_path, spec_overrides)
    store_path = Path(store).absolute() if store else spec.store
    profile_name = cluster or spec.cluster
    if dry_run:
        _dry_run(spec, store_path, profile_name, overrides, retry_failed)
        return
    outcome = run_sweep(
        spec,
        store_path=store_path,
        cluster=profile_name,
        overrides=overrides,
        retry_failed=retry_failed,
        report_dir=report_dir,
        console=console,
    )
    _print_outcome(outcome)
    if not outcome.all_done:
        sys.exit(EXIT_TASKS_FAILED)


EXIT_TASKS_FAILED = 3


def _dry_run(spec, store_path: Path, profile_name: str, overrides, retry_failed: bool) -> None:
    """Print the task table, the store's size estimate and the job script; submit nothing."""
    from .schedule.footprint import gigabytes
    from .schedule.profiles import load_profile
    from .schedule.run import preview
    from .store.space import megabytes
    from .sweep import axis_values

    profile = load_profile(profile_name, overrides)
    the_plan, estimate, free, footprints = preview(spec, store_path, retry_failed)
    axes = [a for a in axis_values(spec) if a not in ("dataset", "seed")]
    out.print(_sweep_table(the_plan, axes))
    out.print(
        f"store: {store_path}\ncluster profile: {profile.name} ({profile.path}), "
        f"kind {profile.kind}\n{len(the_plan.todo)} to compute, {len(the_plan.done)} done, "
        f"{len(the_plan.failed)} failed; dry run: nothing submitted"
    )
    out.print(
        f"store size: up to {megabytes(estimate['total'])} to write (inputs "
        f"{megabytes(estimate['inputs'])}, results {megabytes(estimate['results'])}, merged "
        f"{megabytes(estimate['merged'])}); {megabytes(free)} free there"
    )
    for name, (shape, fp) in footprints.items():
        out.print(
            f"each task of {name} ({'x'.join(map(str, shape))}): about {gigabytes(fp.bytes)} "
            f"of memory, {fp.seconds / 60:.2g} min on one CPU worker (estimates)"
        )
    for name, cfg in spec.multi.items():
        how = "simulated, " if cfg.simulate else ""
        out.print(
            f"multi.{name}: {len(cfg.reflections)} reflections ({how}joint AD "
            f"{cfg.joint.steps} steps) after the merge, into {store_path / 'multi' / name}"
        )
    if profile.kind == "slurm":
        from .schedule.slurm import job_script

        click.echo(f"job script of each worker:\n{job_script(profile)}")


def _print_outcome(outcome) -> None:
    """The sweep's summary: counts, where the store, merged groups, sets and report are, and
    every failed task with its reason."""
    from .store.summary import multi_vs_truth_text, truth_phase_rms
    from .store.zarr_store import Store

    counts = ", ".join(f"{k} {v}" for k, v in sorted(outcome.counts.items())) or "nothing new"
    out.print(
        f"tasks: {outcome.total} in the sweep, {outcome.skipped} were already done; "
        f"this run: {counts}"
    )
    out.print(f"store:  {outcome.store}")
    store = Store.open(outcome.store)
    for key in outcome.merged:
        rms = truth_phase_rms(store.merged_attrs(key))
        extra = f" (phase RMS vs truth {rms:.3f} rad)" if rms is not None else ""
        out.print(f"merged: {outcome.store / 'merged' / key}{extra}")
    for name in outcome.multi:
        extra = multi_vs_truth_text(store.multi_attrs(name))
        skipped = " (unchanged, skipped)" if name in outcome.multi_skipped else ""
        out.print(f"multi:  {outcome.store / 'multi' / name}{extra}{skipped}")
    out.print(f"report: {outcome.report}")
    for tid, reason in sorted(outcome.failed.items()):
        out.print(f"failed: {tid}: {reason.splitlines()[0][:100]}")
    if outcome.failed:
        out.print(f"{len(outcome.failed)} tasks failed; --retry-failed recomputes them")


@main.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "store",
    required=True,
    type=click.Path(path_type=Path),
    help="Zarr store to write the dataset into.",
)
@click.option("--name", help="Dataset name in the store (default: the config file's stem).")
@user_errors
def simulate(config_path, store, name) -> None:
    """Simulate a crystal's Bragg peak from CONFIG (YAML) into a store's inputs."""
    from .config import SimulateConfig, read_yaml, validate
    from .inputs import simulated_input
    from .store.zarr_store import Store

    cfg = validate(SimulateConfig, read_yaml(config_path, "simulate config"), str(config_path))
    name = name or Path(config_path).stem
    ds = simulated_input(cfg, name)
    s = Store.create(store)
    s.write_input(name, ds)
    out.print(
        f"wrote inputs/{name} ({ds['intensity'].shape}, peak "
        f"{float(ds['intensity'].max()):.0f} counts) into {s.path}"
    )


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
    from .store.summary import merged_line, multi_vs_truth_text, status_rows
    from .store.zarr_store import Store

    store = Store.open(store_path)
    rows, counts = status_rows(store, verify=verify)
    columns = ("task", "dataset", "seed", "status", "error", "loss", "wall s", "device", "reason")
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
@user_errors
def merge(store_path, spec_path) -> None:
    """Select, align and merge the best results of each dataset and model."""
    from .config import MergeRule, load_sweep
    from .merge.combine import merge_store
    from .store.summary import merged_line
    from .store.zarr_store import Store

    store = Store.open(store_path)
    rule = load_sweep(spec_path).merge if spec_path else MergeRule(**store.merge_rule())
    before = set(store.quarantined())
    keys = merge_store(store, rule)
    for entry, why in sorted(store.quarantined().items()):
        if entry not in before:
            out.print(f"quarantined: {why} (moved to {store.path / '_quarantine' / entry})")
    if not keys:
        raise DyncdiError("merge", "no completed results in the store", "run a sweep first")
    for key in keys:
        out.print(merged_line(key, store.merged_attrs(key)))


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
    from .report.page import write_report
    from .store.zarr_store import Store

    page = write_report(Store.open(store_path), out_dir)
    out.print(f"report: {page}")


@main.group()
def physics() -> None:
    """Dynamical-diffraction calculator: susceptibilities and rocking curves."""


def _hkl_option(fn):
    return click.option(
        "--hkl", nargs=3, type=int, required=True, metavar="H K L", help="Reflection."
    )(fn)


_UNITS = {
    "bragg_angle_deg": "deg",
    "pendellosung_um": "um",
    "extinction_depth_um": "um",
    "darwin_width_urad": "urad",
    "refraction_shift_urad": "urad",
    "peak_reflectivity": "",
    "peak_position_urad": "urad",
    "fwhm_urad": "urad",
    "kinematical_peak_reflectivity": "",
    "peak_ratio": "",
}


def _print_report(report: dict, keys: list[str]) -> None:
    table = Table(show_header=False)
    for key in keys:
        value = report[key]
        if isinstance(value, list) and len(value) == 2:
            text = f"{value[0]:.6e} {value[1]:+.6e}i"
        elif isinstance(value, float):
            text = f"{value:.6g} {_UNITS.get(key, '')}"
        else:
            text = str(value)
        table.add_row(key, text)
    out.print(table)


@physics.command()
@click.option("--material", required=True, help="Crystal, e.g. Au, Pt, Si, GaAs.")
@_hkl_option
@click.option("--energy-kev", type=float, required=True, help="Photon energy (keV).")
@click.option("--polarisation", type=click.Choice(["sigma", "pi"]), default="sigma")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@user_errors
def susceptibility(material, hkl, energy_kev, polarisation, as_json) -> None:
    """Susceptibilities, Bragg angle, Pendellosung distance, Darwin width of a reflection."""
    import json

    from .physics.calculator import susceptibility_report

    report = susceptibility_report(material, tuple(hkl), energy_kev, polarisation)
    if as_json:
        click.echo(json.dumps(report))
        return
    _print_report(report, ["chi0", "chih", "chihbar", *list(_UNITS)[:5]])


@physics.command("rocking-curve")
@click.option("--material", required=True, help="Crystal, e.g. Au, Pt, Si, GaAs.")
@_hkl_option
@click.option("--energy-kev", type=float, required=True, help="Photon energy (keV).")
@click.option("--thickness-um", type=float, required=True, help="Crystal thickness (um).")
@click.option("--width-um", type=float, required=True, help="Crystal width (um).")
@click.option(
    "--model", type=click.Choice(["dynamical", "kinematical", "slab-exact"]), default="dynamical"
)
@click.option("--polarisation", type=click.Choice(["sigma", "pi"]), default="sigma")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), help="Write a PNG plot.")
@user_errors
def rocking_curve(
    material, hkl, energy_kev, thickness_um, width_um, model, polarisation, as_json, plot_path
) -> None:
    """Reflectivity of a finite crystal across its rocking curve: is it dynamical?"""
    import json

    from .physics.calculator import rocking_curve_report

    report = rocking_curve_report(
        material, tuple(hkl), energy_kev, thickness_um, width_um, model, polarisation
    )
    if plot_path:
        from .report.figures import rocking_curve_figure

        rocking_curve_figure(plot_path, report)
    if as_json:
        click.echo(json.dumps(report))
        return
    _print_report(report, list(_UNITS)[5:])
    ratio = report["peak_ratio"]
    verdict = (
        "dynamical: multiple scattering matters, use model: dynamical"
        if ratio < 0.9
        else "close to kinematical"
    )
    out.print(f"dynamical/kinematical peak ratio {ratio:.3f}: {verdict}")


@main.command()
@click.argument("frames", metavar="FRAMES", type=click.Path(path_type=Path))
@click.option("--out", "store", required=True, type=click.Path(path_type=Path), help="Zarr store.")
@click.option("--beamline", help="Beamline preset or PRESET.yaml (`dyncdi beamlines`).")
@click.option("--spec", "scan_file", type=click.Path(path_type=Path), help="spec or .fio file.")
@click.option("--scan", type=int, help="Scan number (spec #S N, BLISS entry N.1).")
@click.option("--dark", type=click.Path(path_type=Path), help="Full-chip dark field image.")
@click.option("--flat", type=click.Path(path_type=Path), help="Full-chip flat (white) field.")
@click.option("--threshold", type=float, help="Counts below this are set to 0 (corrected).")
@click.option(
    "--geometry", "geometry_path", type=click.Path(path_type=Path), help="YAML: overrides files."
)
@click.option("--name", help="Dataset name in the store (default: the frames' stem).")
@click.option("--key", help="Dataset path (HDF5) or array name (.npz) of the intensities.")
@click.option("--energy-kev", type=float, help="Photon energy (keV).")
@click.option("--detector-distance-m", type=float, help="Sample-detector distance (m).")
@click.option("--pixel-size-um", type=float, help="Detector pixel size (um).")
@click.option("--rocking-step-deg", type=float, help="Rocking-angle step (deg).")
@click.option("--material", help="Crystal, e.g. Au, Pt, Si.")
@click.option("--hkl", nargs=3, type=int, metavar="H K L", help="Reflection.")
@click.option("--polarisation", type=click.Choice(["sigma", "pi"]))
@click.option("--detector", help="Detector of the preset (default: the files', else its own).")
@click.option(
    "--centre-channel", nargs=2, type=float, metavar="ROW COL", help="Direct beam chip pixel."
)
@click.option(
    "--roi", nargs=4, type=int, metavar="R0 R1 C0 C1", help="Chip pixels the frames cover."
)
@click.option("--bin", "bin_factor", type=int, default=1, help="Bin detector pixels N x N.")
@click.option(
    "--shape", nargs=3, type=int, metavar="N0 N1 N2", help="Crop/pad to this shape (FFT sizes)."
)
@click.option("--saturation", type=float, help="Counts at and above which a pixel is masked.")
@user_errors
def load(frames, store, geometry_path, name, **options):
    """Load a measured scan into a store's inputs: FRAMES is a TIFF folder, a CXI/NeXus/HDF5 or
    BLISS file, an Eiger master, or a .npy/.npz array."""
    import warnings

    from .data.load import load_scan, load_summary
    from .data.prepare import LoadWarning
    from .store.zarr_store import Store

    flags = ("scan_file", "scan", "dark", "flat", "threshold", "key", "bin_factor", "saturation")
    kwargs = {k: options.pop(k) for k in flags}
    shape = options.pop("shape") or None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LoadWarning)
        ds = load_scan(frames, geometry_yaml=geometry_path, explicit=options, shape=shape, **kwargs)
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
    name = name or Path(frames).stem
    s = Store.create(store)
    s.write_input(name, ds)
    out.print(load_summary(name, ds, s.path))


@main.command()
@user_errors
def beamlines() -> None:
    """List the beamline presets: name, description, circles and detectors."""
    from .config.beamline import load_beamline, packaged_beamlines

    table = Table(title="beamline presets (dyncdi load --beamline NAME or PRESET.yaml)")
    for col in ("name", "description", "sample circles", "detector circles", "detectors"):
        table.add_column(col)
    for key in sorted(packaged_beamlines()):
        p = load_beamline(key)
        circles = [
            ", ".join(f"{c.name} {c.axis}" for c in cs)
            for cs in (p.sample_circles, p.detector_circles)
        ]
        detectors = ", ".join(
            f"{k} {d.chip[0]}x{d.chip[1]} {d.pixel_size_um[0]:g} um" for k, d in p.detectors.items()
        )
        table.add_row(key, p.description, *circles, f"{detectors} (default {p.default_detector})")
    out.print(table)


@main.command()
@click.argument("store_path", metavar="STORE", type=click.Path(path_type=Path))
@click.option("--vtk", "vtk_dir", type=click.Path(path_type=Path), help="Folder for .vti files.")
@click.option("--cxi", "cxi_path", type=click.Path(path_type=Path), help="CXI file to write.")
@click.option("--key", "keys", multiple=True, help="Merged group(s) to export (default: all).")
@click.option("--voxel-nm", type=float, help="Sample-frame voxel size (default: finest step).")
@user_errors
def export(store_path, vtk_dir, cxi_path, keys, voxel_nm) -> None:
    """Export merged results on the orthogonal sample grid: VTK (ParaView) and/or CXI."""
    from .report.export import write_cxi, write_vtk
    from .store.zarr_store import Store

    if not vtk_dir and not cxi_path:
        raise DyncdiError("export", "nothing to write", "give --vtk DIR and/or --cxi FILE")
    store = Store.open(store_path)
    if vtk_dir:
        for path in write_vtk(store, vtk_dir, list(keys) or None, voxel_nm):
            out.print(f"vtk: {path}")
    if cxi_path:
        out.print(f"cxi: {write_cxi(store, cxi_path, list(keys) or None, voxel_nm)}")


if __name__ == "__main__":
    main()
