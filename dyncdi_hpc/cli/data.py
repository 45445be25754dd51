"""Datasets into a store: `dyncdi simulate`, `dyncdi load`, `dyncdi beamlines`."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from .base import main, out, user_errors


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
    from ..config import SimulateConfig, read_yaml, validate
    from ..inputs import simulated_input
    from ..store.zarr_store import Store

    cfg = validate(SimulateConfig, read_yaml(config_path, "simulate config"), str(config_path))
    name = name or Path(config_path).stem
    ds = simulated_input(cfg, name)
    s = Store.create(store)
    s.write_input(name, ds)
    s.consolidate()
    out.print(
        f"wrote inputs/{name} ({ds['intensity'].shape}, peak "
        f"{float(ds['intensity'].max()):.0f} counts) into {s.path}"
    )


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
@click.option(
    "--name", help="Dataset name in the store (default: scanN with --scan, else the frames' stem)."
)
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

    from ..data.load import load_scan, load_summary
    from ..data.prepare import LoadWarning
    from ..store.zarr_store import Store

    flags = ("scan_file", "scan", "dark", "flat", "threshold", "key", "bin_factor", "saturation")
    kwargs = {k: options.pop(k) for k in flags}
    shape = options.pop("shape") or None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LoadWarning)
        ds = load_scan(frames, geometry_yaml=geometry_path, explicit=options, shape=shape, **kwargs)
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
    name = name or (f"scan{kwargs['scan']}" if kwargs["scan"] is not None else Path(frames).stem)
    s = Store.create(store)
    s.write_input(name, ds)
    s.consolidate()
    out.print(load_summary(name, ds, s.path))


@main.command()
@user_errors
def beamlines() -> None:
    """List the beamline presets: name, description, circles and detectors."""
    from ..config.beamline import load_beamline, packaged_beamlines

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
