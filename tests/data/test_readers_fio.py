"""PETRA III P10: a synthetic .fio file and compressed Eiger master load with their motors,
energy, distance and geometry; a descending rocking curve is stored ascending."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from dyncdi_hpc.data.load import load_scan
from dyncdi_hpc.data.prepare import LoadWarning
from dyncdi_hpc.data.readers_fio import parse_fio
from dyncdi_hpc.errors import DyncdiError
from tests.data.beamline_files import (
    P10_ROI,
    SHAPE,
    STEP_DEG,
    assert_measured_steps,
    peak_frames,
    write_p10,
)


def _load(frames, fio, **options):
    options.setdefault("explicit", {"beamline": "petra-p10", "roi": P10_ROI})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LoadWarning)
        ds = load_scan(frames, scan_file=fio, **options)
    return ds, [str(w.message) for w in caught]


def test_a_p10_scan_loads_from_the_fio_file_and_the_eiger_master(tmp_path):
    fio, master, motors = write_p10(tmp_path / "raw")
    command, params, columns = parse_fio(fio)
    assert command.startswith("dscan om") and params["fmbenergy"] == 9000.0
    assert columns["om"].size == SHAPE[0]
    by_folder, warned = _load(tmp_path / "raw", fio)  # the master found by the preset's path
    by_master, _ = _load(master, fio, scan=12)
    for ds in (by_folder, by_master):
        g = ds.attrs["geometry"]
        assert ds["intensity"].shape == SHAPE
        # frames reversed (om decreased): the peak frame 19 is stored at the centre, 20
        np.testing.assert_array_equal(ds["intensity"].values, peak_frames((19, 32, 32))[::-1])
        assert g["motors"] == pytest.approx(motors)
        assert g["rocking_motor"] == "om" and g["detector"] == "e4m"
        assert g["energy_kev"] == 9.0 and g["detector_distance_m"] == 1.5
        assert g["pixel_size_m"] == pytest.approx(75e-6)
        assert math.degrees(g["rocking_step_rad"]) == pytest.approx(STEP_DEG)
    assert by_folder.attrs["fingerprint"] == by_master.attrs["fingerprint"]
    g = by_folder.attrs["geometry"]
    assert_measured_steps(
        g,
        detector_distance_m=1.5,
        pixel_size_um=75.0,
        beamline="petra-p10",
        motors=motors,
        rocking_motor="om",
        roi=P10_ROI,
    )
    assert abs(g["lattice_strain"]) < 1e-4
    assert not any("lattice strain" in w for w in warned)
    choices = by_folder.attrs["provenance"]["load"]["choices"]
    assert any("frames reversed" in c.get("message", "") for c in choices)
    sources = by_folder.attrs["provenance"]["load"]["sources"]
    assert sources["motors"] == dict.fromkeys(motors, "file")
    assert sources["energy_kev"] == "file" and sources["pixel_size_um"] == "file"


def test_bad_p10_input_is_named(tmp_path):
    fio, master, _ = write_p10(tmp_path / "raw")
    with pytest.raises(DyncdiError, match=r"--scan: align_00012.fio is scan 12, not 13"):
        _load(master, fio, scan=13)
    with pytest.raises(DyncdiError, match=r"FRAMES: no Eiger master file"):
        _load(tmp_path, fio)
    short = fio.read_text().rsplit("\n", 3)[0] + "\n"  # the last two points left out
    fio.write_text(short)
    with pytest.raises(
        DyncdiError, match=r"FRAMES: 40 frames in .* but align_00012.fio recorded 38"
    ):
        _load(master, fio)
