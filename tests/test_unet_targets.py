"""Affinity targets, skeleton rasterisation, boundary growing and losses against slow references."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

torch = pytest.importorskip("torch")

from reference_unet import ref_affinities, ref_path_negative_loss, ref_rasterize  # noqa: E402

from xpress_fast.skeletons import Skeletons  # noqa: E402
from xpress_fast.unet import (  # noqa: E402
    affinities_from_labels,
    affinity_loss,
    balanced_weights,
    default_offsets,
    grow_boundary,
    path_negative_loss,
    rasterize_skeletons,
)

OFFSETS = [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (-2, 0, 0), (0, 0, -3), (1, 0, 0), (0, 2, 0), (-1, 1, -1)]

labels_st = hnp.arrays(
    np.uint16, hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=5), elements=st.integers(0, 3)
)


@settings(max_examples=40)
@given(labels=labels_st, ignore_zero=st.booleans(), data=st.data())
def test_affinities_equal_reference(labels, ignore_zero, data):
    labelled = data.draw(hnp.arrays(np.bool_, labels.shape)) if data.draw(st.booleans()) else None
    before = labels.copy()
    t = affinities_from_labels(labels, OFFSETS, ignore_zero=ignore_zero, labelled=labelled)
    ra, rm = ref_affinities(labels, OFFSETS, ignore_zero=ignore_zero, labelled=labelled)
    np.testing.assert_array_equal(t.affinities, ra)
    np.testing.assert_array_equal(t.mask, rm)
    np.testing.assert_array_equal(labels, before)


def test_affinities_known_case():
    lab = np.array([[[1, 1, 2, 0]]], np.uint64)
    t = affinities_from_labels(lab, [(0, 0, -1)])
    np.testing.assert_array_equal(t.affinities[0, 0, 0], [0, 1, 0, 0])
    np.testing.assert_array_equal(t.mask[0, 0, 0], [0, 1, 1, 1])  # voxel 0's partner is outside
    t = affinities_from_labels(lab, [(0, 0, -1)], ignore_zero=True)
    np.testing.assert_array_equal(t.mask[0, 0, 0], [0, 1, 1, 0])


def test_affinities_errors():
    with pytest.raises(ValueError, match="offsets must be"):
        affinities_from_labels(np.zeros((2, 2, 2), np.uint8), [(1, 0)])
    with pytest.raises(TypeError, match="labels must have an integer"):
        affinities_from_labels(np.zeros((2, 2, 2), np.float32), OFFSETS)
    with pytest.raises(ValueError, match="labelled must have the shape"):
        affinities_from_labels(np.zeros((2, 2, 2), np.uint8), OFFSETS, labelled=np.ones((2, 2), bool))


def test_grow_boundary():
    lab = np.zeros((1, 1, 9), np.uint64)
    lab[..., :4] = 1
    lab[..., 4:] = 2
    g = grow_boundary(lab, 1)
    np.testing.assert_array_equal(g[0, 0], [1, 1, 1, 0, 0, 2, 2, 2, 2])
    np.testing.assert_array_equal(grow_boundary(lab, 0), lab)
    with pytest.raises(ValueError, match="steps must be"):
        grow_boundary(lab, -1)


@settings(max_examples=25)
@given(
    pos=hnp.arrays(np.float64, (4, 3), elements=st.floats(-20, 120, allow_nan=False)),
    radius=st.floats(10, 45),
    connect=st.lists(st.booleans(), min_size=3, max_size=3),
    two_ids=st.booleans(),
)
def test_rasterize_equals_reference(pos, radius, connect, two_ids):
    edges = [(i, i + 1) for i in range(3) if connect[i]]
    ids = np.array([5, 5, 7, 7]) if two_ids else np.array([3, 3, 3, 3])
    sk = Skeletons(pos, np.array(edges, np.int64).reshape(-1, 2), ids=ids)
    shape, vs, off = (4, 5, 6), (25.0, 20.0, 18.0), (-5.0, 3.0, 0.0)
    got = rasterize_skeletons(sk, shape, voxel_size=vs, offset=off, radius=radius)
    want = ref_rasterize(pos, edges, ids, shape, vs, off, radius)
    np.testing.assert_array_equal(got, want)


@settings(max_examples=25)
@given(
    pos=hnp.arrays(np.float64, (4, 3), elements=st.floats(-20, 120, allow_nan=False)),
    radius=st.floats(10, 45),
    own=st.floats(5, 60),
    connect=st.lists(st.booleans(), min_size=3, max_size=3),
)
def test_rasterize_own_radii_equal_reference(pos, radius, own, connect):
    edges = [(i, i + 1) for i in range(3) if connect[i]]
    ids = np.array([5, 5, 7, 7])
    sk = Skeletons(pos, np.array(edges, np.int64).reshape(-1, 2), ids=ids)
    shape, vs, off = (4, 5, 6), (25.0, 20.0, 18.0), (-5.0, 3.0, 0.0)
    got = rasterize_skeletons(sk, shape, voxel_size=vs, offset=off, radius=radius, radii={7: own})
    want = ref_rasterize(pos, edges, ids, shape, vs, off, radius, radii={7: own})
    np.testing.assert_array_equal(got, want)


def test_rasterize_own_radius_by_hand():
    # two lines along x, through voxel centres (z, y) = (2, 2) (id 1) and (2, 8) (id 2), 10 nm
    # voxels: id 1 keeps radius 10 nm (a cross of 5 voxels per x), id 2 gets 25 nm (the 21 voxels
    # with (dz, dy) on or inside a circle of 2.5 voxels)
    sk = Skeletons(np.array([[25.0, 25, 5], [25, 25, 35], [25, 85, 5], [25, 85, 35]]),
                   np.array([[0, 1], [2, 3]]), ids=np.array([1, 1, 2, 2]))
    got = rasterize_skeletons(sk, (5, 11, 4), voxel_size=(10, 10, 10), radius=10.0, radii={2: 25.0})
    z, y = np.mgrid[:5, :11]
    want = np.zeros((5, 11), np.uint64)
    want[(z - 2) ** 2 + (y - 2) ** 2 <= 1] = 1
    want[(z - 2) ** 2 + (y - 8) ** 2 <= 2.5**2] = 2
    np.testing.assert_array_equal(got, np.repeat(want[:, :, None], 4, axis=2))
    # an id without a skeleton changes nothing; the default radius applies to the rest
    same = rasterize_skeletons(sk, (5, 11, 4), voxel_size=(10, 10, 10), radius=10.0, radii={9: 40.0})
    np.testing.assert_array_equal(same, rasterize_skeletons(sk, (5, 11, 4), voxel_size=(10, 10, 10), radius=10.0))


def test_rasterize_straight_tube():
    # a skeleton along x through the centres of voxels (z, y) = (5, 5) (voxel q spans [10 q, 10 q + 10)
    # nm, centre 10 q + 5): exactly the voxels within 1.5 voxels of the line
    vs = np.array([10.0, 10.0, 10.0])
    sk = Skeletons(np.array([[55.0, 55.0, 5.0], [55.0, 55.0, 95.0]]), np.array([[0, 1]]), ids=np.array([4, 4]))
    got = rasterize_skeletons(sk, (11, 11, 10), voxel_size=vs, radius=15.0)
    z, y = np.mgrid[:11, :11]
    disc = (z - 5) ** 2 + (y - 5) ** 2 <= 1.5**2
    np.testing.assert_array_equal(got, np.where(disc[:, :, None], 4, 0).repeat(10, axis=2))


def test_rasterize_conflicts_are_unlabelled():
    sk = Skeletons(np.array([[5.0, 5, 5], [5, 5, 45], [5, 15, 5], [5, 15, 45]]),  # voxel centres
                   np.array([[0, 1], [2, 3]]), ids=np.array([1, 1, 2, 2]))
    got = rasterize_skeletons(sk, (1, 3, 5), voxel_size=(10, 10, 10), radius=10.0)
    assert (got[0, 0] == 0).all() or (got[0, 1] == 0).all()  # y = 0 and y = 1 are within both tubes
    assert (got[0, 2] == 2).all()


def test_rasterize_errors():
    sk = Skeletons(np.zeros((1, 3)), np.zeros((0, 2), np.int64))
    with pytest.raises(ValueError, match="radius must be"):
        rasterize_skeletons(sk, (2, 2, 2), voxel_size=(1, 1, 1), radius=0)
    with pytest.raises(ValueError, match="voxel_size must be positive"):
        rasterize_skeletons(sk, (2, 2, 2), voxel_size=(0, 1, 1))
    for bad in (0.0, -3.0, float("nan")):
        with pytest.raises(ValueError, match="radii must map skeleton ids to positive"):
            rasterize_skeletons(sk, (2, 2, 2), voxel_size=(1, 1, 1), radius=1.0, radii={1: bad})
    with pytest.raises(ValueError, match="shape must be"):
        rasterize_skeletons(sk, (2, 2), voxel_size=(1, 1, 1))
    with pytest.raises(TypeError, match="skeletons must be"):
        rasterize_skeletons("nope", (2, 2, 2), voxel_size=(1, 1, 1))


# ------------------------------------------------------------------------------------- losses
def _random_batch(seed, shape=(2, 4, 5, 6, 7)):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=g, dtype=torch.float64) * 2
    target = (torch.rand(shape, generator=g) < 0.3).double()
    mask = (torch.rand(shape, generator=g) < 0.6).double()
    return logits, target, mask


@pytest.mark.parametrize("kind", ["bce", "mse"])
@pytest.mark.parametrize("balance", [True, False])
def test_masked_voxels_get_zero_gradient(kind, balance):
    logits, target, mask = _random_batch(0)
    logits.requires_grad_(True)
    loss = affinity_loss(logits, target, mask, kind=kind, balance=balance)
    loss.backward()
    assert torch.all(logits.grad[mask == 0] == 0)
    assert torch.any(logits.grad[mask == 1] != 0)
    # changing predictions or targets under the mask changes nothing
    logits2 = logits.detach().clone()
    target2 = target.clone()
    logits2[mask == 0] = 17.0
    target2[mask == 0] = 1 - target2[mask == 0]
    assert float(affinity_loss(logits2, target2, mask, kind=kind, balance=balance)) == pytest.approx(loss.item())


def test_balanced_weights_halve_the_mass():
    _, target, mask = _random_batch(1)
    w = balanced_weights(target, mask)
    dims = (2, 3, 4)
    pos = (w * target * mask).sum(dims)
    neg = (w * (1 - target) * mask).sum(dims)
    torch.testing.assert_close(pos, neg)
    torch.testing.assert_close(pos + neg, mask.sum(dims))
    assert torch.all(w[mask == 0] == 0)


def test_loss_errors():
    a = torch.zeros(1, 1, 2, 2, 2)
    with pytest.raises(ValueError, match="kind must be"):
        affinity_loss(a, a, a, kind="l1")
    with pytest.raises(ValueError, match="one shape"):
        affinity_loss(a, a, torch.zeros(1, 1, 2, 2, 1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_path_negative_loss_equals_reference(seed):
    offsets = default_offsets((3,)) + [(0, 2, 0), (0, 0, 4), (-1, -1, 0)]
    shape = (2, len(offsets), 5, 6, 7)
    logits, target, mask = _random_batch(seed, shape)
    got = float(path_negative_loss(logits, target, mask, offsets))
    want = ref_path_negative_loss(logits.numpy(), target.numpy(), mask.numpy(), offsets)
    assert got == pytest.approx(want, rel=1e-6)
    # forward-pointing nearest-neighbour channels
    offsets = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (-3, 0, 0), (0, 3, 0)]
    logits, target, mask = _random_batch(seed + 10, (1, 5, 6, 6, 6))
    got = float(path_negative_loss(logits, target, mask, offsets))
    want = ref_path_negative_loss(logits.numpy(), target.numpy(), mask.numpy(), offsets)
    assert got == pytest.approx(want, rel=1e-6)


def test_path_negative_loss_targets_weakest_link():
    # one negative pair along z over 3 links: only the link with the smallest logit gets gradient
    offsets = [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (-3, 0, 0)]
    logits = torch.zeros(1, 4, 4, 1, 1, dtype=torch.float64)
    logits[0, 0, :, 0, 0] = torch.tensor([0.0, 2.0, -1.0, 3.0])
    logits.requires_grad_(True)
    target = torch.zeros_like(logits)
    mask = torch.zeros_like(logits)
    mask[0, 3, 3, 0, 0] = 1  # pair (z=3, z=0): links stored at z = 1, 2, 3
    path_negative_loss(logits, target, mask, offsets).backward()
    g = logits.grad[0, 0, :, 0, 0]
    assert g[2] > 0 and g[0] == 0 and g[1] == 0 and g[3] == 0


sparse_st = hnp.arrays(
    np.uint8, hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=6),
    elements=st.sampled_from([0, 0, 0, 1, 2, 3]),
)


@settings(max_examples=40)
@given(labels=sparse_st, forward=st.booleans())
def test_gap_negatives_equal_reference(labels, forward):
    from reference_unet import ref_gap_groups

    from xpress_fast.unet import gap_negatives

    offsets = [(1, 0, 0), (0, 1, 0), (0, 0, 1)] if forward else default_offsets((3,))
    links, groups = gap_negatives(labels, offsets)
    got = sorted(frozenset(links[groups == g].tolist()) for g in np.unique(groups))
    want = sorted(ref_gap_groups(labels, [tuple(o) for o in offsets]))
    assert got == want
    assert np.all(np.diff(groups) >= 0)


def test_gap_negative_loss_pushes_weakest_link():
    from xpress_fast.unet import gap_negative_loss, gap_negatives

    lab = np.zeros((1, 1, 6), np.uint8)
    lab[0, 0, 0], lab[0, 0, 5] = 1, 2  # links along x stored at x = 1..5 (backward channel)
    links, groups = gap_negatives(lab, default_offsets(()))
    assert len(np.unique(groups)) == 1 and len(links) == 5
    logits = torch.zeros(1, 3, 1, 1, 6, dtype=torch.float64)
    logits[0, 2, 0, 0] = torch.tensor([-9.0, 3.0, 1.0, -2.0, 4.0, 0.5])
    logits.requires_grad_(True)
    loss = gap_negative_loss(logits, [torch.from_numpy(links)], [torch.from_numpy(groups)])
    assert loss.item() == pytest.approx(np.log1p(np.exp(-2.0)))
    loss.backward()
    g = logits.grad[0, 2, 0, 0]
    assert g[3] > 0 and torch.count_nonzero(g) == 1  # x = 0 is not between the two voxels
