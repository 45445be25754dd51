"""Cluster profiles from the command line: `dyncdi profiles`, `dyncdi config show`."""

from __future__ import annotations

import click
import yaml

from .base import main, out, user_errors


@main.command()
@user_errors
def profiles() -> None:
    """List the cluster profiles that --cluster finds, first folder first, and their kind."""
    from ..schedule.profiles import load_profile, profile_dirs

    seen: set[str] = set()
    for folder in profile_dirs():
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            shadowed = path.stem in seen
            seen.add(path.stem)
            try:
                kind = load_profile(str(path)).kind
            except Exception as exc:  # a broken site profile is listed, not fatal
                kind = f"invalid: {exc}"
            note = " (shadowed by the one above)" if shadowed else ""
            click.echo(f"{path.stem:<16} {kind:<6} {path}{note}")


@main.group()
def config() -> None:
    """Show the configuration dyncdi would use."""


@config.command("show")
@click.option(
    "--cluster", "cluster", default="local", show_default=True, help="Profile name or path."
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="A cluster-profile override, as dyncdi sweep takes it (local.n_workers=1, "
    "slurm.walltime=02:00:00, scale=8); repeatable.",
)
@user_errors
def show(cluster, overrides) -> None:
    """Print the effective cluster profile: the file, then dask's config files, DASK_*
    environment variables and --set overrides on top, validated as a sweep would."""
    from ..schedule.profiles import load_profile

    profile = load_profile(cluster, tuple(overrides))
    effective = {"dyncdi": {"cluster": profile.settings}}
    if profile.kind == "slurm":
        effective["jobqueue"] = {profile.config_name: profile.jobqueue}
    out.print(f"# profile {profile.name} ({profile.path}), kind {profile.kind}", markup=False)
    click.echo(yaml.safe_dump(effective, sort_keys=False).rstrip())
    if profile.kind == "slurm":
        from ..schedule.slurm import job_script

        click.echo(f"# job script of each worker:\n{job_script(profile)}")
