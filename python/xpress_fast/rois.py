"""The XPRESS challenge's regions of interest (nm, z y x)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Roi:
    """An axis-aligned box in world coordinates (nm, z y x): ``begin`` inclusive, ``shape`` extent."""

    begin: tuple[float, float, float]
    shape: tuple[float, float, float]

    @property
    def end(self) -> tuple[float, ...]:
        return tuple(b + s for b, s in zip(self.begin, self.shape))

    def voxels(self, voxel_size: npt.ArrayLike) -> tuple[int, ...]:
        """The ROI's shape in voxels of ``voxel_size`` (must divide it)."""
        vs = np.asarray(voxel_size, dtype=np.float64)
        return tuple(int(round(s / v)) for s, v in zip(self.shape, vs))


#: The validation ROI of the challenge (METRICS.md).
VALIDATION_ROI = Roi(begin=(8316, 8316, 8316), shape=(23067, 23067, 23067))
#: The test ROI (the submission's extent: 334^3 voxels at 99 nm).
TEST_ROI = Roi(begin=(3267, 3267, 3267), shape=(33066, 33066, 33066))
#: The submission's voxel size (nm).
SUBMISSION_VOXEL_SIZE = (99, 99, 99)
