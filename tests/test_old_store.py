"""A store written by the code before the package restructuring resumes with zero recomputation.

tests/data/store_f41b5a8.tar.gz is the store that commit f41b5a8 wrote for
tests/data/store_f41b5a8.yaml (9 tasks: 6 done, 3 failed with a non-finite AD loss; one merged
group). Rerunning the same sweep on it must compute nothing, leave every result as it was, and
re-merge the same results into the same merged object. Only the command line and the files
are used here (no package internals), so the test holds while the internals move.
"""

from __future__ import annotations

import re
import tarfile
import traceback
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from dyncdi_hpc.cli import EXIT_TASKS_FAILED, main

DATA = Path(__file__).resolve().parent / "data"
SPEC = DATA / "store_f41b5a8.yaml"
TARBALL = DATA / "store_f41b5a8.tar.gz"
STORE_NAME = "store_f41b5a8.zarr"
N_TASKS, N_DONE, N_FAILED = 9, 6, 3  # what f41b5a8 wrote for the spec


def _extract(dest: Path) -> Path:
    with tarfile.open(TARBALL) as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4; later ones warn without it
            tar.extractall(dest, filter="data")
        else:
            tar.extractall(dest)
    return dest / STORE_NAME


def _children(group: Path) -> set[str]:
    return {p.name for p in group.iterdir() if p.is_dir()}


def _tree_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under folder (relative path -> content)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _explain(result) -> str:
    """The command's output, and its traceback when it raised."""
    if result.exc_info is None or isinstance(result.exception, SystemExit):
        return result.output
    return result.output + "".join(traceback.format_exception(*result.exc_info))


def _merged_arrays(store: Path, key: str) -> dict[str, np.ndarray | list]:
    with xr.open_zarr(store, group=f"merged/{key}", consolidated=False) as ds:
        return {
            "amplitude": ds["amplitude"].values,
            "phase": ds["phase"].values,
            "support": ds["support"].values.astype(bool),
            "members": list(ds.attrs["members"]),
        }


@pytest.mark.slow
def test_old_store_resumes_without_recomputing(tmp_path):
    store = _extract(tmp_path)
    results = store / "results"
    ids = _children(results)
    assert len(ids) == N_TASKS
    statuses = {}
    for tid in ids:
        with xr.open_zarr(store, group=f"results/{tid}", consolidated=False) as ds:
            statuses[tid] = ds.attrs["status"]
    assert sorted(statuses.values()) == ["done"] * N_DONE + ["failed"] * N_FAILED
    result_files = _tree_bytes(results)  # every results/<id>/zarr.json and chunk
    input_files = _tree_bytes(store / "inputs")
    merged_keys = _children(store / "merged")
    assert merged_keys  # the old code merged the done results
    old_merged = {key: _merged_arrays(store, key) for key in merged_keys}

    runner = CliRunner()
    report = tmp_path / "report"
    run = runner.invoke(main, ["sweep", str(SPEC), "--store", str(store), "--report", str(report)])
    # the store holds failed tasks: a rerun that computes nothing still lists them, exit 3
    assert run.exit_code == EXIT_TASKS_FAILED, _explain(run)
    assert f"{N_FAILED} tasks failed; --retry-failed recomputes them" in run.output
    # f41b5a8 prints "tasks: 9 in the sweep, 6 were already done; this run: nothing new"
    # (its "already done" counts done results only, not the failed ones it also skips)
    summary = re.search(
        r"tasks: (\d+) in the sweep, \d+ were already done; this run: (.*)", run.stdout
    )
    assert summary, run.output
    assert int(summary.group(1)) == N_TASKS
    assert summary.group(2).strip() == "nothing new", run.output
    assert "dask dashboard" not in run.output  # no cluster was started
    assert (report / "index.html").is_file()

    # nothing was computed or rewritten: same ids, byte-identical groups
    assert _children(results) == ids
    after = _tree_bytes(results)
    assert after.keys() == result_files.keys()
    for name, content in result_files.items():
        assert after[name] == content, name
    assert _tree_bytes(store / "inputs") == input_files

    # the sweep re-merges every run: the same members give the same merged object. f41b5a8
    # reproduces its own merge of this store bit for bit (checked); the tolerances leave room
    # for reordered float32 arithmetic only.
    assert merged_keys <= _children(store / "merged")
    for key, old in old_merged.items():
        new = _merged_arrays(store, key)
        assert new["members"] == old["members"], key
        assert new["amplitude"].shape == old["amplitude"].shape
        assert np.allclose(new["amplitude"], old["amplitude"], rtol=0, atol=1e-5), key
        inside = old["support"]
        assert inside.any()
        dphase = np.angle(np.exp(1j * (new["phase"][inside] - old["phase"][inside])))
        assert np.max(np.abs(dphase)) < 1e-4, key

    status = runner.invoke(main, ["status", str(store)])
    assert status.exit_code == 0, _explain(status)
    for tid in ids:
        assert tid in status.stdout, tid
