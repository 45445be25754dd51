"""examples/measured-scan.ipynb, executed as a user would run it: the quick sweep of the shipped
scan 54 (examples/measured-scan-quick.yaml: two thresholds, so two merged groups) is written by
the command line into a temporary store, then every cell runs in a python3 kernel (ipykernel,
this interpreter) that reads the store from DYNCDI_NOTEBOOK_STORE."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOTEBOOK = EXAMPLES / "measured-scan.ipynb"
QUICK_SPEC = EXAMPLES / "measured-scan-quick.yaml"
# the notebook reads the store, not the report
CLUSTER = (
    "--set",
    "local.n_workers=2",
    "--set",
    "local.dashboard_address=127.0.0.1:0",
    "--no-report",
)
RMS_LINE = re.compile(r"displacement RMS difference inside both supports: (\d+\.\d+) nm")


def _code_cells(nb) -> list:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in _code_cells(nb):
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.slow
@pytest.mark.cluster
def test_measured_scan_notebook_runs_on_the_quick_sweep(tmp_path, monkeypatch):
    store = tmp_path / "quick.zarr"
    command = [sys.executable, "-m", "dyncdi_hpc", "sweep", str(QUICK_SPEC), "--store", str(store)]
    sweep = subprocess.run(
        [*command, *CLUSTER],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert sweep.returncode == 0, sweep.stdout + sweep.stderr
    merged = sorted(p.name for p in (store / "merged").iterdir() if p.is_dir())
    assert merged == ["scan54-kinematical", "scan54-t4-kinematical"]

    # the kernel inherits this process's environment; the cwd is the notebook's folder
    monkeypatch.setenv("DYNCDI_NOTEBOOK_STORE", str(store))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}
    )
    client.execute()  # raises CellExecutionError at the first cell that raises

    outputs = [out for cell in _code_cells(nb) for out in cell.outputs]
    assert [out for out in outputs if out.output_type == "error"] == []
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) == 3  # slices with their spreads, support_probability, differences

    (comparison,) = [cell for cell in nb.cells if "comparison" in cell.metadata.get("tags", [])]
    printed = "".join(out.get("text", "") for out in comparison.outputs)
    match = RMS_LINE.search(printed)
    assert match, printed
    # two thresholds of one scan: the same crystal, within a fraction of d111 = 0.235 nm
    assert 0 < float(match.group(1)) < 0.05, printed
