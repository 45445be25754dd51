"""The measured-scan benchmark's summaries on tiny synthetic arrays; no store, no sweep."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.figure import Figure

from benchmarks import BENCHMARKS, PLOTS, WORKFLOW_BENCHMARKS
from benchmarks import real_34idc as bench
from benchmarks.cohere import cohere_start
from dyncdi_hpc.merge.align import twin
from dyncdi_hpc.physics.objects import support_of
from dyncdi_hpc.recon.pipeline import centre_roll

REPO = Path(__file__).resolve().parents[2]

N = 24


def crystal(phase_kind: str = "smooth", n: int = N) -> np.ndarray:
    """An ellipsoid with a smooth phase, centred on an (n, n, n) grid, complex128."""
    r = np.stack(np.meshgrid(*[np.arange(n) - n // 2] * 3, indexing="ij"))
    inside = (r[0] / 5.0) ** 2 + (r[1] / 4.0) ** 2 + (r[2] / 3.5) ** 2 <= 1.0
    if phase_kind == "smooth":
        # the even term makes the twin differ from the object
        phase = 0.8 * np.sin(r[0] / 3.0) + 0.9 * (r[1] / 4.0) ** 2 + 0.3 * r[2] / 3.5
    else:
        phase = np.random.default_rng(7).uniform(-np.pi, np.pi, inside.shape)
    return inside * np.exp(1j * phase)


def test_registered() -> None:
    assert BENCHMARKS["real_34idc"] is bench.run
    assert PLOTS["real_34idc"] is bench.plot
    assert "real_34idc" in WORKFLOW_BENCHMARKS
    assert bench.WORKFLOW.is_file()


def test_scaled_error_is_the_pipeline_metric() -> None:
    """recon/pipeline.py's error: sum (sqrt(model) - sqrt(counts))^2 / sum counts, measured."""
    obj = crystal()
    scale = 40.0
    far = np.fft.fftn(obj, norm="ortho")
    counts_fft = np.random.default_rng(0).poisson(scale**2 * np.abs(far) ** 2).astype(np.float32)
    counts = np.fft.fftshift(counts_fft)  # peak-centred, as the input group stores them
    mask = np.zeros(counts.shape, bool)
    mask[0, :, :] = True
    data = bench.data_of(counts, mask)
    assert data.amplitude.dtype == np.float32 and not data.measured[np.fft.ifftshift(mask)].any()
    measured = np.fft.ifftshift(~mask)
    model = scale**2 * np.abs(far) ** 2
    expected = np.sum(((np.sqrt(model) - np.sqrt(counts_fft)) ** 2)[measured])
    expected /= np.sum(counts_fft[measured])
    # a whole-voxel roll of the object (our centring) changes no |F|
    rolled = np.roll(obj, (3, -2, 5), axis=(0, 1, 2))
    assert bench.scaled_error(rolled, scale, data) == pytest.approx(expected, rel=1e-4)
    saturated = bench.data_of(counts, None, saturation=float(counts.max()))
    assert (~saturated.measured).sum() == (counts >= counts.max()).sum()


def test_least_squares_scale_fits_an_exact_model() -> None:
    obj = crystal()
    amplitude = np.fft.fftshift(3.0 * np.abs(np.fft.fftn(obj, norm="ortho")))
    data = bench.data_of(amplitude**2, None)
    error, scale = bench.best_error(obj / 7.0, data)
    assert scale == pytest.approx(21.0, rel=1e-4)
    assert error < 1e-8
    # any other scale does worse
    assert bench.scaled_error(obj / 7.0, 0.9 * scale, data) > error


def test_agreement_removes_twin_shift_ramp_and_offset() -> None:
    best = crystal()
    grid = np.stack(np.meshgrid(*[np.arange(N)] * 3, indexing="ij"))
    ramp = np.exp(1j * (0.2 * grid[0] - 0.1 * grid[2]))
    same = np.roll(twin(best), (2, -1, 1), axis=(0, 1, 2)) * ramp * np.exp(0.7j)
    other = crystal("random")
    rows = bench.agreement([same, best, other], [0.02, 0.01, 0.03])
    assert rows[1] == {
        "phase_rms_vs_best_rad": 0.0,
        "interior_phase_rms_vs_best_rad": 0.0,
        "dice_vs_best": 1.0,
        "twin_of_best": False,
    }
    assert rows[0]["twin_of_best"]
    assert rows[0]["phase_rms_vs_best_rad"] < 0.05
    assert rows[0]["dice_vs_best"] > 0.95
    assert rows[2]["phase_rms_vs_best_rad"] > 1.0
    rms = [r["phase_rms_vs_best_rad"] for r in rows]
    assert bench.count_agreeing(rms) == 2
    assert bench.count_agreeing([0.1, 0.3, float("nan"), 0.29]) == 2


def test_compare_scores_phase_inside_both_supports() -> None:
    ref = crystal()
    shifted_phase = ref * np.exp(0.2j * np.abs(ref))  # a constant offset: removed by align
    c = bench.compare(shifted_phase, ref)
    assert c.phase_rms_rad < 1e-3 and c.interior_phase_rms_rad < 1e-3
    assert c.dice == pytest.approx(1.0)
    assert c.common_voxels == int((np.abs(ref) > 0).sum())


def test_support_span_along_lab_axes() -> None:
    support = np.zeros((8, 8, 8), bool)
    support[1:4, 2:7, 3:5] = True
    assert bench.support_span_nm(support, np.eye(3)) == [2.0, 4.0, 1.0]
    # columns are the voxel steps in the lab: grid axis 0 steps 10 nm along lab z
    basis = np.array([[0.0, 5.0, 0.0], [0.0, 0.0, 2.0], [10.0, 0.0, 0.0]])
    assert bench.support_span_nm(support, basis) == [20.0, 2.0, 20.0]
    assert bench.support_span_nm(np.zeros((2, 2, 2), bool), basis) == [0.0, 0.0, 0.0]


def test_wall_from_attrs() -> None:
    results = [
        {
            "started_at": "2026-12-03T14:00:00+00:00",
            "wall_s": 400.0,
            "provenance": {"written_at": "2026-12-03T14:06:40+00:00"},
        },
        {
            "started_at": "2026-12-03T14:00:05+00:00",
            "wall_s": 410.0,
            "provenance": {"written_at": "2026-12-03T14:06:55+00:00"},
        },
    ]
    merged = {"provenance": {"written_at": "2026-12-03T14:08:00+00:00"}}
    wall = bench.wall_from_attrs(results, merged)
    assert wall["wall_s"] == 480.0 and wall["task_wall_s_sum"] == 810.0
    assert "store attrs" in wall["wall_s_source"]
    assert bench.wall_from_attrs(results, None)["wall_s"] == 415.0


def test_cohere_random_start_is_cohere_s_and_seeded() -> None:
    support = np.zeros((6, 6, 6), np.int64)
    support[1:4, 1:4, 1:4] = 1
    a = bench.cohere_random_start(support, 5.0, seed=3)
    assert a.dtype == np.complex128
    assert np.all(a[support == 0] == 0)
    np.testing.assert_array_equal(a, bench.cohere_random_start(support, 5.0, seed=3))
    assert not np.array_equal(a, bench.cohere_random_start(support, 5.0, seed=4))
    # U[0,1) parts scaled by sum |r|^2 * max(data) over the whole array (cohere's rule)
    inside = a[support == 1]
    assert np.all(inside.real >= 0) and np.all(inside.imag >= 0)
    assert np.abs(inside).max() < 2 * 216 * 5.0 * math.sqrt(2)


def test_centred_ours_undoes_cohere_s_convention() -> None:
    obj = crystal()
    rolled = np.roll(obj, (5, -3, 2), axis=(0, 1, 2))
    image, _ = cohere_start(np.fft.ifftshift(rolled), np.ones(obj.shape, bool))
    back = bench.centred_ours(image)
    np.testing.assert_allclose(
        np.abs(np.fft.fftn(back)), np.abs(np.fft.fftn(obj)), rtol=1e-6, atol=1e-6
    )
    # centred like our results: the support's centre of mass on the array centre
    assert centre_roll(support_of(back)) == (0, 0, 0)
    np.testing.assert_allclose(np.abs(back), np.abs(obj), atol=1e-6)


def test_cohere_settings_are_config_rec_s_phasing_keys() -> None:
    """The embedded config_rec is the beamline's (../shared, when beside the checkout), read
    by Python's own TOML parser (cohere's format), not by cohere's reader, which the bench
    extra installs and the benchmark itself uses."""
    parsed = tomllib.loads(bench.CONFIG_REC)
    shared = REPO.parent / "shared" / "data" / "aps34idc-au111-scan54" / "cohere-config"
    if (shared / "config_rec").is_file():
        assert tomllib.loads((shared / "config_rec").read_text()) == parsed
    assert parsed["algorithm_sequence"] == "3*(20*ER+180*HIO)+20*ER"
    assert parsed["shrink_wrap_threshold"] == 0.1 and parsed["hio_beta"] == 0.9
    assert parsed["twin_trigger"] == [2]
    assert set(bench.NOT_PHASING) <= set(parsed)
    phasing = {k: v for k, v in parsed.items() if k not in bench.NOT_PHASING}
    assert "reconstructions" not in phasing and phasing["shrink_wrap_type"] == "GAUSS"


def test_central_slices_box_and_masking() -> None:
    ours = crystal()
    theirs = np.roll(ours, 1, axis=0)
    slices = bench.central_slices({"ours": ours, "cohere": theirs}, margin=2)
    (a0, b0), (a1, b1), (a2, b2) = slices["box"]
    assert [len(slices["ours"][0]), len(slices["ours"][0][0])] == [b1 - a1, b2 - a2]
    assert [len(slices["cohere"][2]), len(slices["cohere"][2][0])] == [b0 - a0, b1 - a1]
    flat = [v for row in slices["ours"][1] for v in row]
    assert None in flat and any(isinstance(v, float) for v in flat)


def synthetic_result() -> dict:
    starts = [
        {
            "task_id": f"{i:016x}",
            "seed": i,
            "fourier_error": 0.012 + 0.001 * i,
            "fourier_error_ls_scale": 0.0119 + 0.001 * i,
            "phase_rms_vs_best_rad": 0.1 * i,
            "interior_phase_rms_vs_best_rad": 0.05 * i,
            "dice_vs_best": 1.0 - 0.02 * i,
            "agrees": 0.1 * i < bench.AGREE_RAD,
            "wall_s": 400.0,
        }
        for i in range(4)
    ]
    slices = bench.central_slices({"ours": crystal(), "cohere": crystal()})
    return {
        "starts": starts,
        "poisson_floor": 0.004,
        "agreeing_starts": 3,
        "merged": {"members": ["a", "b"], "fourier_error": 0.0125, "error_ratio_to_best": 1.05},
        "cohere": {
            "fourier_error": 0.02,
            "support_dice": 0.8,
            "phase_rms_rad": 0.4,
            "runs": [
                {
                    "seed": 0,
                    "fourier_error": 0.02,
                    "phase_rms_rad": 0.4,
                    "interior_phase_rms_rad": 0.3,
                    "support_dice": 0.8,
                    "wall_s": 250.0,
                }
            ],
        },
        "slices": slices,
    }


def test_table_rows_and_plot() -> None:
    result = synthetic_result()
    rows = bench.table_rows(result)
    assert len(rows) == 4 + 1 + 1
    assert rows[0]["/ floor"] == pytest.approx(0.012 / 0.004)
    assert [r[f"< {bench.AGREE_RAD:g} rad"] for r in rows[:4]] == [True, True, True, False]
    assert rows[4]["x best"] == 1.05 and rows[5]["what"] == "cohere"
    assert isinstance(bench.plot(result), Figure)
    assert bench.plot({"starts": []}) is None


def test_scaled_error_takes_complex128() -> None:
    """Objects come as complex64 (ours) and complex128 (cohere): both are scored in float32."""
    obj = crystal()
    data = bench.data_of(np.fft.fftshift(np.abs(np.fft.fftn(obj, norm="ortho")) ** 2), None)
    e64 = bench.scaled_error(obj.astype(np.complex64), 1.0, data)
    e128 = bench.scaled_error(obj, 1.0, data)
    assert e64 == pytest.approx(e128, abs=1e-7) and e64 < 1e-8
    assert jnp.asarray(data.amplitude).dtype == jnp.float32


def test_relative_phase_removes_the_shared_offset() -> None:
    obj = crystal()
    slices = bench.central_slices({"ours": obj * np.exp(2.0j), "cohere": obj * np.exp(2.1j)})
    images = bench.relative_phase(slices, ["ours", "cohere"])
    ours = np.concatenate([x[np.isfinite(x)] for x in images["ours"]])
    theirs = np.concatenate([x[np.isfinite(x)] for x in images["cohere"]])
    assert abs(np.angle(np.sum(np.exp(1j * ours)))) < 1e-6
    np.testing.assert_allclose(theirs - ours, 0.1, atol=1e-3)
