"""Small synthetic scan files in the layouts of ESRF ID01 (BLISS HDF5) and PETRA III P10 (.fio
and an Eiger master): a Gaussian Bragg peak of Au 111 at 9 keV, the motors at the Bragg
condition for the peak's pixel, written the way those beamlines write them (see the readers'
docstrings: data/readers_bliss.py, data/readers_fio.py)."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

from dyncdi_hpc.config import GeometryConfig
from dyncdi_hpc.physics.geometry import make_geometry

SHAPE = (40, 64, 64)  # frames, rows, columns
ENERGY_KEV = 9.0
STEP_DEG = 0.01
BRAGG_DEG = math.degrees(
    make_geometry(
        energy_kev=ENERGY_KEV,
        material="Au",
        hkl=(1, 1, 1),
        shape=(8, 8, 8),
        rocking_step_rad=1e-4,
        pixel_size_m=55e-6,
        detector_distance_m=1.0,
    ).bragg_angle_rad
)
# chip pixels the frames cover: clear of the detectors' gaps, near their centre channels
ID01_ROI = (262, 326, 262, 326)  # Maxipix 516 x 516, direct beam at (258, 258)
P10_ROI = (1104, 1168, 1042, 1106)  # Eiger 4M 2167 x 2070, direct beam at (1083, 1035)


def assert_measured_steps(attrs: dict, **fields) -> None:
    """The stored geometry attrs' q steps equal those GeometryConfig(**fields) builds for the
    synthetic scan's shape, energy and rocking step."""
    cfg = GeometryConfig(energy_kev=ENERGY_KEV, shape=SHAPE, rocking_step_deg=STEP_DEG, **fields)
    expected = cfg.build().q_basis_lab
    np.testing.assert_allclose(attrs["q_basis_lab"], expected, rtol=1e-6, atol=1e-12)


def peak_frames(centre: tuple[int, int, int], counts: float = 1e5) -> np.ndarray:
    """Frames SHAPE int32 of a Gaussian peak (widths 2.5 frames, 2 pixels) at centre."""
    grids = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    r2 = sum(((g - c) / w) ** 2 for g, c, w in zip(grids, centre, (2.5, 2.0, 2.0), strict=True))
    return np.round(counts * np.exp(-0.5 * r2)).astype(np.int32)


def detector_angle(roi: tuple[int, int, int, int], cch_row: float, pixel_m, distance_m) -> float:
    """The detector's vertical angle (deg) that puts 2 theta_B on the frames' centre row
    (rows point down: a row below the direct beam sees a smaller scattering angle)."""
    rows_below = (roi[0] + roi[1]) / 2 - cch_row
    return 2 * BRAGG_DEG + math.degrees(rows_below * pixel_m / distance_m)


def write_bliss(path: Path, scan: int = 3) -> dict:
    """A BLISS file with scans 1 (a motor scan, no frames) and `scan` (eta rocking curve,
    Maxipix frames at 0.8 m); returns the motors at the peak frame."""
    eta = BRAGG_DEG + STEP_DEG * (np.arange(SHAPE[0]) - SHAPE[0] // 2)
    motors = {
        "mu": 0.0,
        "eta": BRAGG_DEG,
        "phi": 0.0,
        "nu": 0.0,
        "delta": detector_angle(ID01_ROI, 258, 55e-6, 0.8),
    }
    with h5py.File(path, "w") as f:
        f["1.1/title"] = "ascan phi 0 1 10 0.1"
        f["1.1/instrument/positioners/phi"] = np.linspace(0, 1, 11)
        entry = f.create_group(f"{scan}.1")
        entry.attrs["NX_class"] = "NXentry"
        entry["title"] = f"ascan eta {eta[0]:.4f} {eta[-1]:.4f} {SHAPE[0] - 1} 0.1"
        positioners = entry.create_group("instrument/positioners")
        for name, value in {**motors, "eta": eta, "mononrj": ENERGY_KEV, "samx": 1.5}.items():
            positioners[name] = value
        entry["instrument/mpx1x4/distance"] = 0.8
        entry.create_dataset(
            "measurement/mpx1x4", data=peak_frames((20, 32, 32)), **hdf5plugin.Bitshuffle()
        )
        entry["measurement/eta"] = eta
    return motors


def write_p10(raw: Path, sample: str = "align", scan: int = 12) -> tuple[Path, Path, dict]:
    """A P10 scan folder `raw/<sample>_<scan>/`: the .fio file of a descending om rocking
    curve (dscan) and the Eiger master with its frames in two compressed datasets at 1.5 m;
    returns (fio path, master path, the motors at the peak frame)."""
    folder = raw / f"{sample}_{scan:05d}"
    (folder / "e4m").mkdir(parents=True)
    om = BRAGG_DEG + 0.19 - STEP_DEG * np.arange(SHAPE[0])  # the peak at frame 19
    motors = {
        "mu": 0.0,
        "om": BRAGG_DEG,
        "chi": 90.0,
        "phi": 0.0,
        "gam": 0.0,
        "del": detector_angle(P10_ROI, 1083, 75e-6, 1.5),
    }
    params = {**motors, "om": float(om[0]), "fmbenergy": 1e3 * ENERGY_KEV, "sample": sample}
    lines = ["!", "! Comments", "!", "%c", "dscan om 0.19 -0.20 39 1.0"]
    lines += ["user p10user Acquisition started at Thu Dec 3 10:00:00 2026", "!", "! Parameter"]
    lines += ["!", "%p", *(f"{k} = {v}" for k, v in params.items()), "!", "! Data", "!", "%d"]
    lines += [" Col 1 om DOUBLE", " Col 2 e4m_roi DOUBLE"]
    lines += [f" {v:.6f} {100 * i:.1f}" for i, v in enumerate(om)]
    fio = folder / f"{sample}_{scan:05d}.fio"
    fio.write_text("\n".join(lines) + "\n")
    master = folder / "e4m" / f"{sample}_{scan:05d}_master.h5"
    frames = peak_frames((19, 32, 32)).astype(np.uint32)
    with h5py.File(master, "w") as f:
        for name, part in (("data_000001", frames[:25]), ("data_000002", frames[25:])):
            f.create_dataset(f"entry/data/{name}", data=part, **hdf5plugin.Bitshuffle())
        f["entry/instrument/detector/detector_distance"] = 1.5
        f["entry/instrument/detector/x_pixel_size"] = 75e-6
    return fio, master, motors
