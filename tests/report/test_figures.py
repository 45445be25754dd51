"""The report's figures: the comparison with the ground truth on the conjugate grid has axes in
nm, ticks and a colour bar with units on every row, like the other object figures."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from dyncdi_hpc.report.figures import conjugate_axes_nm, object_figure, object_panels
from tests.report.test_parts import _crystal

SHAPE = (16, 32, 32)
VOXEL_NM = (30.0, 20.0, 25.0)


@pytest.fixture
def truth_figure():
    obj = _crystal(SHAPE)
    support = np.abs(obj) > 0.5
    truth = (np.abs(obj), np.angle(obj), support)
    limits = [(-300.0, 300.0), (-250.0, 250.0), (-280.0, 280.0)]
    fig = object_panels(
        np.abs(obj), np.angle(obj), support, truth, "xtal: merged vs truth", VOXEL_NM, limits
    )
    yield fig
    plt.close(fig)


def _images_and_colour_bars(fig):
    images = [ax for ax in fig.axes if ax.images]
    bars = [ax for ax in fig.axes if not ax.images]
    return images, bars


def test_every_panel_of_the_truth_comparison_has_axes_in_nm_and_ticks(truth_figure):
    images, _ = _images_and_colour_bars(truth_figure)
    assert len(images) == 4 * 3  # merged and true amplitude and phase, three slices each
    for ax in images:
        assert ax.get_xlabel().endswith("(nm)") and ax.get_ylabel().endswith("(nm)")
        assert ax.get_xlabel()[:2] in ("x0", "x1", "x2"), ax.get_xlabel()
        assert len(ax.get_xticks()) >= 2 and len(ax.get_yticks()) >= 2
        assert "nm" in ax.get_title()  # where the slice sits
    # the slice normal to x0 shows x2 across and x1 up, in nm from the grid's centre voxel
    first = images[0]
    assert (first.get_xlabel(), first.get_ylabel()) == ("x2 (nm)", "x1 (nm)")
    assert first.get_xlim() == (-280.0, 280.0) and first.get_ylim() == (-250.0, 250.0)
    x0, x1, x2 = conjugate_axes_nm(SHAPE, VOXEL_NM)
    assert first.images[0].get_extent() == [x2[0], x2[-1], x1[0], x1[-1]]
    assert x0[SHAPE[0] // 2] == 0.0 and x1[1] - x1[0] == 20.0


def test_every_row_of_the_truth_comparison_has_a_colour_bar_with_units(truth_figure):
    _, bars = _images_and_colour_bars(truth_figure)
    assert [ax.get_ylabel() for ax in bars] == [
        "amplitude (relative)",
        "phase (rad)",
        "amplitude (relative)",
        "phase (rad)",
    ]
    assert "conjugate" in truth_figure.get_suptitle()


def test_without_voxel_sizes_the_axes_are_in_voxels(tmp_path):
    obj = _crystal(SHAPE)
    fig = object_panels(np.abs(obj), np.angle(obj), np.abs(obj) > 0.5)
    try:
        images, bars = _images_and_colour_bars(fig)
        assert len(images) == 6 and len(bars) == 2
        assert all(ax.get_xlabel().endswith("(voxels)") for ax in images)
    finally:
        plt.close(fig)
    png = object_figure(tmp_path / "o.png", np.abs(obj), np.angle(obj), np.abs(obj) > 0.5)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
