"""xf.map_labels against a plain dict lookup."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import xpress_fast as xf


def reference_map(labels, keys, values):
    table = dict(zip(np.asarray(keys).tolist(), np.asarray(values).tolist()))
    flat = [table.get(x, x) for x in np.asarray(labels).ravel().tolist()]
    return np.array(flat, dtype=np.uint64).reshape(np.shape(labels))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([np.uint8, np.uint32, np.uint64, np.int64]),
       st.sampled_from([10, 2**20, 2**63]), st.integers(0, 30))
def test_matches_a_dict_lookup(seed, dtype, high, n_keys):
    rng = np.random.default_rng(seed)
    top = min(high, np.iinfo(dtype).max)
    labels = rng.integers(0, top, size=(3, 4, 5), dtype=np.uint64, endpoint=True).astype(dtype)
    pool = np.unique(np.concatenate([labels.ravel().astype(np.uint64),
                                     rng.integers(0, 2**64 - 1, size=5, dtype=np.uint64)]))
    keys = rng.permutation(pool)[:n_keys]  # any order
    values = rng.integers(0, 2**64 - 1, size=keys.size, dtype=np.uint64)
    before = labels.copy()
    got = xf.map_labels(labels, keys, values)
    assert got.dtype == np.uint64 and got.shape == labels.shape
    np.testing.assert_array_equal(got, reference_map(labels, keys, values))
    np.testing.assert_array_equal(labels, before)


def test_large_array_uses_threads_and_agrees():
    labels = np.random.default_rng(0).integers(0, 1000, size=(2**21,), dtype=np.uint32)
    keys = np.arange(0, 1000, 3, dtype=np.uint64)
    got = xf.map_labels(labels, keys, keys * 10)
    want = np.where(labels % 3 == 0, labels.astype(np.uint64) * 10, labels)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("args, exc, match", [
    ((np.array([1.5]), [1], [2]), TypeError, "labels must be an integer array"),
    ((np.array([-1]), [1], [2]), ValueError, "labels must not be negative"),
    ((np.array([1]), [1, 2], [2]), ValueError, "same length"),
    ((np.array([1]), [2, 1, 2], [1, 2, 3]), ValueError, "keys must be unique; 2"),
    ((np.array([1]), [1], [-2]), ValueError, "values must not be negative"),
    (("abc", [1], [2]), TypeError, "labels must be a numpy array"),
])
def test_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        xf.map_labels(*args)
