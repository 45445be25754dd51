"""`dyncdi physics`: the dynamical-diffraction calculator."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from .base import main, out, user_errors


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

    from ..physics.calculator import susceptibility_report

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
@click.option(
    "--range-urad",
    type=float,
    help="Half-range around the refracted peak (urad; default: from thickness and Darwin width).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), help="Write a PNG plot.")
@user_errors
def rocking_curve(
    material,
    hkl,
    energy_kev,
    thickness_um,
    width_um,
    model,
    polarisation,
    range_urad,
    as_json,
    plot_path,
) -> None:
    """Reflectivity of a finite crystal across its rocking curve: is it dynamical?"""
    import json

    from ..physics.calculator import rocking_curve_report

    report = rocking_curve_report(
        material,
        tuple(hkl),
        energy_kev,
        thickness_um,
        width_um,
        model,
        polarisation,
        range_urad=range_urad,
    )
    if plot_path:
        from ..report.figures import rocking_curve_figure

        rocking_curve_figure(plot_path, report)
    if as_json:
        click.echo(json.dumps(report))
        return
    _print_report(report, list(_UNITS)[5:])
    ratio = report["peak_ratio"]
    verdict = (
        "dynamical: multiple scattering matters, so fit measured data of this crystal with "
        "model: dynamical (data simulated kinematically, like workflows/demo.yaml's, stay "
        "kinematical)"
        if ratio < 0.9
        else "close to kinematical: model: kinematical describes this crystal"
    )
    out.print(f"dynamical/kinematical peak ratio {ratio:.3f}: {verdict}")
