"""One threshold validator (xpress_fast._validate.check_threshold / check_thresholds) behind every
threshold-like argument: each entry point names its argument and says the same thing the same
way for the same bad value."""
from __future__ import annotations

import numpy as np
import pytest

import xpress_fast as xf
from xpress_fast._validate import check_threshold, check_thresholds
from xpress_fast.fragments import distance_transform_seeds

AFFS = np.full((3, 4, 4, 4), 0.75, np.float32)
FRAGS = np.arange(1, 65, dtype=np.uint64).reshape(4, 4, 4)


@pytest.fixture(scope="module")
def agg():
    return xf.merge_history(AFFS, [0.3, 0.6], fragments=FRAGS)


# (argument name, call with one value); every one takes a single number in [0, 1]
SINGLE = {
    "watershed threshold": ("threshold", lambda t: xf.watershed(AFFS, threshold=t)),
    "watershed min_mean_affinity": ("min_mean_affinity", lambda t: xf.watershed(AFFS, min_mean_affinity=t)),
    "seeds threshold": ("threshold", lambda t: distance_transform_seeds(AFFS, threshold=t)),
    "region_graph inside_threshold": ("inside_threshold", lambda t: xf.region_graph(FRAGS, AFFS, inside_threshold=t)),
    "merge_history thresholds": ("thresholds", lambda t: xf.merge_history(AFFS, t, fragments=FRAGS)),
    "mutex bias": ("bias", lambda t: xf.mutex_watershed(AFFS, xf.axis_offsets(), bias=t)),
}


@pytest.mark.parametrize("where", SINGLE)
@pytest.mark.parametrize("value, error, says", [
    (float("nan"), ValueError, "be finite; got nan"),
    (float("inf"), ValueError, "be finite; got inf"),
    (1.5, ValueError, r"be .*in \[0, 1\]; got 1.5"),
    (-0.25, ValueError, r"be .*in \[0, 1\]; got -0.25"),
    ("0.5", TypeError, "be .*a number.*; got '0.5'"),
    (True, TypeError, "be .*a number.*; got True"),
])
def test_every_single_threshold_says_the_same(where, value, error, says):
    name, call = SINGLE[where]
    with pytest.raises(error, match=rf"^{name} must {says}"):
        call(value)


def test_optional_thresholds_say_so():
    with pytest.raises(ValueError, match=r"^inside_threshold must be None or a number in \[0, 1\]; got 2"):
        xf.region_graph(FRAGS, AFFS, inside_threshold=2)
    with pytest.raises(ValueError, match=r"^min_mean_affinity must be None or a number in \[0, 1\]; got -0.1"):
        xf.watershed(AFFS, min_mean_affinity=-0.1)
    with pytest.raises(ValueError, match=r"^threshold must be a number in \[0, 1\]; got 2.0"):
        xf.watershed(AFFS, threshold=2.0)


@pytest.mark.parametrize("call", [
    lambda v: xf.merge_history(AFFS, v, fragments=FRAGS),
    lambda v: xf.sweep_methods(AFFS, None, v, voxel_size=(1, 1, 1)),  # thresholds are checked first
], ids=["merge_history", "sweep_methods"])
@pytest.mark.parametrize("values, error, says", [
    ([], ValueError, "thresholds must hold at least one threshold"),
    ([0.5, 0.3], ValueError, r"thresholds must be strictly increasing; got \[0.5, 0.3\]"),
    ([0.2, float("nan")], ValueError, "thresholds must be finite; got nan"),
    ([0.2, 1.5], ValueError, r"thresholds must be numbers in \[0, 1\]; got 1.5"),
    ("abc", TypeError, "thresholds must be a number or a sequence of numbers; got 'abc'"),
    ([0.2, "0.5"], TypeError, "thresholds must be a number or a sequence of numbers"),
    ([True], TypeError, "thresholds must be a number or a sequence of numbers"),
    (np.array([True]), TypeError, "thresholds must be a number or a sequence of numbers"),
])
def test_every_threshold_sequence_says_the_same(call, values, error, says):
    with pytest.raises(error, match=f"^{says}"):
        call(values)


def test_a_number_or_a_0d_array_is_one_threshold(agg):
    for one in (0.5, np.float32(0.5), np.array(0.5)):
        np.testing.assert_array_equal(check_thresholds("t", one), [0.5])
        assert check_threshold("t", one) == 0.5
        assert type(check_threshold("t", one)) is float
    np.testing.assert_array_equal(xf.agglomerate(AFFS, np.array(0.5), fragments=FRAGS),
                                  xf.agglomerate(AFFS, 0.5, fragments=FRAGS))


def test_queries_of_an_agglomeration_are_bounded_by_its_largest_threshold(agg):
    ids = np.array([1, 2], np.uint64)
    with pytest.raises(ValueError, match=r"^threshold must be a number <= 0.6, the largest threshold this run "
                                         r"merged to; got 0.7"):
        agg.lut(0.7)
    with pytest.raises(ValueError, match=r"^thresholds must be numbers <= 0.6, the largest threshold this run "
                                         r"merged to; got 0.7"):
        agg.map_many(ids, [0.2, 0.7])
    with pytest.raises(TypeError, match="^thresholds must be a sequence of numbers; got 0.5"):
        agg.map_many(ids, 0.5)
    assert agg.n_merges(-1.0) == 0  # no lower bound: below every merge
    assert agg.map_many(ids, []).shape == (0, 2)  # no threshold, no row
    assert agg.map_many(ids, [0.6, 0.2]).shape == (2, 2)  # any order


def test_the_caller_object_is_not_modified():
    values = np.array([0.2, 0.4])
    out = check_thresholds("thresholds", values)
    out[0] = 9
    assert values[0] == 0.2
