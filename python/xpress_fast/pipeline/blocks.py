"""The block grid of the pipeline: re-exported from :mod:`xpress_fast.blocking`, where the API's
in-memory :func:`~xpress_fast.fragments.blockwise_watershed` uses the very same geometry."""
from __future__ import annotations

from ..blocking import Block, BlockLayout

__all__ = ["Block", "BlockLayout"]
