"""Block layouts: a volume cut into a grid of blocks, each read with a margin of context.

Pure geometry (numpy only), shared by the in-memory :func:`xpress_fast.fragments.blockwise_watershed`
and the dask pipeline (:mod:`xpress_fast.pipeline`, which re-exports these names), so both cut a
volume the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, SupportsInt

import numpy as np

from ._validate import int_triple

__all__ = ["Block", "BlockLayout"]


@dataclass(frozen=True)
class Block:
    """One block of a :class:`BlockLayout`: its grid position and its core voxel box.

    ``begin`` is inclusive and ``end`` exclusive (voxels, z y x).
    """

    index: int
    grid: tuple[int, ...]
    begin: tuple[int, ...]
    end: tuple[int, ...]

    @property
    def core(self) -> tuple[slice, ...]:
        """Slices of the block's core in the volume."""
        return tuple(slice(b, e) for b, e in zip(self.begin, self.end))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(e - b for b, e in zip(self.begin, self.end))

    def with_context(self, context: Iterable[int], volume_shape: Iterable[int]
                     ) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
        """``(read, core_in_read)``: slices of the core grown by ``context`` voxels per axis
        (clipped to the volume), and the core's slices inside that read region."""
        read, inner = [], []
        for b, e, c, s in zip(self.begin, self.end, context, volume_shape):
            rb, re = max(0, b - c), min(s, e + c)
            read.append(slice(rb, re))
            inner.append(slice(b - rb, e - rb))
        return tuple(read), tuple(inner)

    def lower_overlap(self, planes: Iterable[SupportsInt] = (1, 1, 1)) -> tuple[tuple[slice, ...], tuple[int, ...]]:
        """``(read, context)``: the core grown by ``planes`` planes (clipped to the volume) at
        each lower face, and that per-axis context for ``region_graph``, so that the blocks'
        voxel edges partition the volume's (each counted exactly once; one plane is enough for
        the nearest neighbours, ``k`` for long-range pairs up to ``k`` voxels back)."""
        ctx = tuple(min(int(p), b) for p, b in zip(planes, self.begin))
        return tuple(slice(b - c, e) for b, e, c in zip(self.begin, self.end, ctx)), ctx


class BlockLayout:
    """A (z, y, x) volume of ``shape`` cut into blocks of ``block_shape`` (the last ones smaller).

    Blocks are numbered in C order of their grid position.
    """

    def __init__(self, shape: Iterable[SupportsInt], block_shape: Iterable[SupportsInt]) -> None:
        self.shape = int_triple("shape", shape)
        self.block_shape = int_triple("block_shape", block_shape)
        self.grid_shape = tuple(-(-s // b) for s, b in zip(self.shape, self.block_shape))

    def __len__(self) -> int:
        return int(np.prod(self.grid_shape))

    def __iter__(self) -> Iterator[Block]:
        for i in range(len(self)):
            yield self.block(i)

    def __repr__(self) -> str:
        return f"BlockLayout(shape={self.shape}, block_shape={self.block_shape}, blocks={len(self)})"

    def block(self, index: int) -> Block:
        if not 0 <= index < len(self):
            raise IndexError(f"block index must be in [0, {len(self)}); got {index}")
        grid = tuple(int(g) for g in np.unravel_index(index, self.grid_shape))
        begin = tuple(g * b for g, b in zip(grid, self.block_shape))
        end = tuple(min(s, bg + b) for s, bg, b in zip(self.shape, begin, self.block_shape))
        return Block(index, grid, begin, end)
