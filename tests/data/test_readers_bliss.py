"""ESRF ID01: a synthetic BLISS file loads with its motors, energy, distance and geometry."""

from __future__ import annotations

import math
import warnings

import pytest

from dyncdi_hpc.data.load import load_scan
from dyncdi_hpc.data.prepare import LoadWarning
from dyncdi_hpc.errors import DyncdiError
from tests.data.beamline_files import (
    BRAGG_DEG,
    ID01_ROI,
    SHAPE,
    STEP_DEG,
    assert_measured_steps,
    write_bliss,
)


def _load(path, **options):
    options.setdefault("explicit", {"beamline": "esrf-id01", "roi": ID01_ROI})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LoadWarning)
        ds = load_scan(path, **options)
    return ds, [str(w.message) for w in caught]


def test_a_bliss_scan_loads_with_its_motors_and_geometry(tmp_path):
    motors = write_bliss(tmp_path / "sample.h5", scan=3)
    ds, warned = _load(tmp_path / "sample.h5", scan=3)
    g = ds.attrs["geometry"]
    assert ds["intensity"].shape == SHAPE  # FFT-friendly with the peak at the centre: kept
    assert g["motors"] == pytest.approx(motors)
    assert g["rocking_motor"] == "eta" and g["detector"] == "mpx1x4"
    assert g["energy_kev"] == 9.0 and g["detector_distance_m"] == 0.8
    assert math.degrees(g["rocking_step_rad"]) == pytest.approx(STEP_DEG)
    assert g["roi"] == list(ID01_ROI) and g["centre_channel"] == [258.0, 258.0]
    assert_measured_steps(
        g,
        detector_distance_m=0.8,
        beamline="esrf-id01",
        motors=motors,
        rocking_motor="eta",
        roi=ID01_ROI,
    )
    assert abs(g["lattice_strain"]) < 1e-4  # the motors put 2 theta_B on the peak's pixel
    assert not any("lattice strain" in w for w in warned)
    sources = ds.attrs["provenance"]["load"]["sources"]
    assert sources["energy_kev"] == sources["detector_distance_m"] == "file"
    assert sources["roi"] == "flag"
    found = ds.attrs["provenance"]["load"]["found"]
    assert "3.1/instrument/mpx1x4/distance" in found["detector_distance_m"]
    assert ds.attrs["source"]["entry"] == "3.1"
    assert BRAGG_DEG == pytest.approx(17.01, abs=0.01)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"scan": 7}, r"--scan: sample.h5 has no scan 7 \(entries 1.1, 3.1\)"),
        ({}, r"--scan: sample.h5 holds 2 scans"),
        ({"scan": 1}, r"detector: sample.h5: none of esrf-id01's detectors"),
        (
            {"scan": 3, "explicit": {"beamline": "esrf-id01"}},
            r"--roi: the frames are 64 x 64 pixels of the 516 x 516 chip",
        ),
    ],
)
def test_bad_bliss_input_is_named(tmp_path, options, message):
    write_bliss(tmp_path / "sample.h5", scan=3)
    with pytest.raises(DyncdiError, match=message):
        _load(tmp_path / "sample.h5", **options)
