"""Input checks that run before anything is submitted."""

import numpy as np
import pytest

from dyncdi_hpc.data.validate import check_intensity
from dyncdi_hpc.errors import DyncdiError


@pytest.mark.parametrize(("frames", "edge"), [(slice(0, 10), "first"), (slice(22, 32), "last")])
def test_a_rocking_scan_that_misses_the_peak_is_refused(noiseless32, geometry32, frames, edge):
    """Keep only the scan's first or last 10 frames, padded back with empty frames."""
    cut = np.zeros_like(noiseless32.intensity)
    kept = noiseless32.intensity[frames]
    if edge == "first":
        cut[-10:] = kept  # the peak's rising flank ends at the scan's last frame
        edge = "last"
    else:
        cut[:10] = kept
        edge = "first"
    with pytest.raises(DyncdiError, match=f"misses the Bragg peak.*{edge} of 32"):
        check_intensity(cut, geometry32, "datasets.x")


def test_a_centred_scan_passes(noiseless32, geometry32):
    check_intensity(noiseless32.intensity, geometry32, "datasets.x")
