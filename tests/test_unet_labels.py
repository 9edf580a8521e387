"""Label generation for skeleton-only training: mined background, pseudo-labels, their union."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

pytest.importorskip("torch")

from reference_unet import ref_mine_background, ref_select_pseudo_labels  # noqa: E402
from xpress_fast.skeletons import Skeletons  # noqa: E402
from xpress_fast.unet import (  # noqa: E402
    mine_background,
    node_voxels,
    rasterize_skeletons,
    select_pseudo_labels,
    skeleton_label_volume,
    skeleton_radii,
)


def _line_along_z(y=2, x=2, nz=5, vs=1.0):
    """A skeleton through the centres of voxels (z, y, x) for z = 0 .. nz - 1 (voxel size vs nm)."""
    return Skeletons(np.array([[0.5 * vs, (y + 0.5) * vs, (x + 0.5) * vs], [(nz - 0.5) * vs, (y + 0.5) * vs,
                                                                           (x + 0.5) * vs]]),
                     np.array([[0, 1]]), ids=np.array([1, 1]))


# ------------------------------------------------------------------------------ mined background
def test_mine_background_around_a_line_by_hand():
    sk = _line_along_z()
    # margin 1.5 nm: the 3 x 3 column around the line (distances 0, 1 and sqrt 2) is near
    bg = mine_background(sk, (5, 5, 5), voxel_size=(1, 1, 1), margin=1.5)
    want = np.ones((5, 5), bool)
    want[1:4, 1:4] = False
    np.testing.assert_array_equal(bg, np.broadcast_to(want, (5, 5, 5)))
    # margin 1 nm: a distance of exactly 1 is "at least the margin" away, so only the line is near
    bg = mine_background(sk, (5, 5, 5), voxel_size=(1, 1, 1), margin=1.0)
    want = np.ones((5, 5), bool)
    want[2, 2] = False
    np.testing.assert_array_equal(bg, np.broadcast_to(want, (5, 5, 5)))


def test_mine_background_anisotropic_isolated_node():
    # one node at the centre of voxel (1, 2, 2) with voxel size (2, 1, 1) nm: z neighbours are 2 nm
    # away, y / x neighbours 1 nm, diagonal ones in y x sqrt 2 nm
    sk = Skeletons(np.array([[3.0, 2.5, 2.5]]), np.zeros((0, 2), np.int64))
    bg = mine_background(sk, (3, 5, 5), voxel_size=(2, 1, 1), margin=1.2)
    near = np.argwhere(~bg)
    np.testing.assert_array_equal(near, [[1, 1, 2], [1, 2, 1], [1, 2, 2], [1, 2, 3], [1, 3, 2]])


def test_mine_background_offset_and_empty():
    sk = _line_along_z()
    moved = Skeletons(sk.positions + 100.0, sk.edges)
    np.testing.assert_array_equal(mine_background(moved, (5, 5, 5), voxel_size=(1, 1, 1), offset=(100, 100, 100), margin=1.5),
                                  mine_background(sk, (5, 5, 5), voxel_size=(1, 1, 1), margin=1.5))
    empty = Skeletons(np.zeros((0, 3)), np.zeros((0, 2), np.int64))
    assert mine_background(empty, (2, 3, 4), voxel_size=(1, 1, 1), margin=5).all()
    with pytest.raises(ValueError, match="margin must be a positive"):
        mine_background(sk, (5, 5, 5), voxel_size=(1, 1, 1), margin=0)


@settings(max_examples=25)
@given(pos=hnp.arrays(np.float64, (3, 3), elements=st.floats(-20, 120, allow_nan=False)),
       margin=st.floats(5, 60), connect=st.lists(st.booleans(), min_size=2, max_size=2))
def test_mine_background_equals_reference(pos, margin, connect):
    edges = [(i, i + 1) for i in range(2) if connect[i]]
    sk = Skeletons(pos, np.array(edges, np.int64).reshape(-1, 2))
    shape, vs, off = (4, 5, 6), (25.0, 20.0, 18.0), (-5.0, 3.0, 0.0)
    got = mine_background(sk, shape, voxel_size=vs, offset=off, margin=margin)
    np.testing.assert_array_equal(got, ref_mine_background(pos, edges, shape, vs, off, margin))


def test_mine_background_own_margins_by_hand():
    # two lines along z (ids 1 and 2) in a 5 x 9 cross-section, 1 nm voxels; skeleton 2 gets
    # its own margin of 2.5 nm, skeleton 1 keeps 1.5
    a = _line_along_z(y=2, x=1, nz=3)
    b = _line_along_z(y=2, x=7, nz=3)
    sk = Skeletons(np.vstack([a.positions, b.positions]), np.array([[0, 1], [2, 3]]), ids=np.array([1, 1, 2, 2]))
    bg = mine_background(sk, (3, 5, 9), voxel_size=(1, 1, 1), margin=1.5, margins={2: 2.5})
    yy, xx = np.mgrid[0:5, 0:9]
    d1 = np.hypot(yy - 2, xx - 1)
    d2 = np.hypot(yy - 2, xx - 7)
    want = (d1 >= 1.5) & (d2 >= 2.5)
    np.testing.assert_array_equal(bg, np.broadcast_to(want, (3, 5, 9)))
    # an id that no skeleton has changes nothing
    np.testing.assert_array_equal(mine_background(sk, (3, 5, 9), voxel_size=(1, 1, 1), margin=1.5, margins={7: 9.0}),
                                  mine_background(sk, (3, 5, 9), voxel_size=(1, 1, 1), margin=1.5))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="margins must map skeleton ids"):
            mine_background(sk, (3, 5, 9), voxel_size=(1, 1, 1), margin=1.5, margins={2: bad})


@settings(max_examples=20)
@given(pos=hnp.arrays(np.float64, (4, 3), elements=st.floats(-20, 120, allow_nan=False)),
       margin=st.floats(5, 60), own=st.floats(5, 80))
def test_mine_background_own_margins_equal_reference(pos, margin, own):
    ids = np.array([1, 1, 2, 2])
    sk = Skeletons(pos, np.array([[0, 1], [2, 3]]), ids=ids)
    shape, vs, off = (4, 5, 6), (25.0, 20.0, 18.0), (-5.0, 3.0, 0.0)
    got = mine_background(sk, shape, voxel_size=vs, offset=off, margin=margin, margins={2: own})
    np.testing.assert_array_equal(got, ref_mine_background(pos, [(0, 1), (2, 3)], shape, vs, off, margin,
                                                           ids=ids, margins={2: own}))


# ------------------------------------------------------------------------------ object radii
def _cylinders(radii_vox, shape=(12, 24, 40), inside=200, outside=60, vs=10.0):
    """Bright cylinders along z (radius in voxels) in a dark volume, with skeletons on their axes."""
    raw = np.full(shape, outside, np.uint8)
    yy, xx = np.mgrid[0:shape[1], 0:shape[2]]
    pos, edges, ids = [], [], []
    for k, r in enumerate(radii_vox):
        cy, cx = shape[1] // 2, 8 + 20 * k
        raw[:, np.hypot(yy - cy, xx - cx) < r] = inside
        n = len(pos)
        pos += [[0.5 * vs, (cy + 0.5) * vs, (cx + 0.5) * vs], [(shape[0] - 0.5) * vs, (cy + 0.5) * vs, (cx + 0.5) * vs]]
        edges.append([n, n + 1])
        ids += [k + 1, k + 1]
    return raw, Skeletons(np.array(pos), np.array(edges), ids=np.array(ids))


def test_skeleton_radii_of_cylinders_by_hand():
    # radii 3 and 6 voxels of 10 nm: voxels at distance < r are bright, so the first shell darker
    # than half way starts at r voxels, r * 10 nm (without smoothing)
    raw, sk = _cylinders([3, 6])
    got = skeleton_radii(raw, sk, voxel_size=(10, 10, 10), sigma=0)
    assert got == {1: 30.0, 2: 60.0}
    # smoothing moves the edge by at most a voxel
    smooth = skeleton_radii(raw, sk, voxel_size=(10, 10, 10), sigma=1.0)
    assert abs(smooth[1] - 30) <= 10 and abs(smooth[2] - 60) <= 10
    # the geometry follows the offset
    moved = Skeletons(sk.positions + 500.0, sk.edges, ids=sk.ids)
    assert skeleton_radii(raw, moved, voxel_size=(10, 10, 10), offset=(500, 500, 500), sigma=0) == got


def test_skeleton_radii_flat_profile_gives_max_radius_and_bad_input():
    raw, sk = _cylinders([3])
    flat = np.full_like(raw, 100)
    assert skeleton_radii(flat, sk, voxel_size=(10, 10, 10), sigma=0, max_radius=120) == {1: 120.0}
    # nothing inside the volume: no radius at all
    away = Skeletons(sk.positions + 1e5, sk.edges, ids=sk.ids)
    assert skeleton_radii(raw, away, voxel_size=(10, 10, 10)) == {}
    with pytest.raises(ValueError, match="3-d"):
        skeleton_radii(raw[0], sk, voxel_size=(10, 10, 10))
    with pytest.raises(ValueError, match="max_radius"):
        skeleton_radii(raw, sk, voxel_size=(10, 10, 10), max_radius=0)
    with pytest.raises(ValueError, match="sigma"):
        skeleton_radii(raw, sk, voxel_size=(10, 10, 10), sigma=-1)


# ------------------------------------------------------------------------------ pseudo-labels
def _row_case():
    # one row of 8 voxels (voxel size 1 nm): segments 1 1 2 2 3 3 0 4
    seg = np.array([[[1, 1, 2, 2, 3, 3, 0, 4]]], np.uint64)
    # skeleton 5 has nodes in voxels 0, 1 (segment 1) and 2 (segment 2); skeleton 7 in voxels 3
    # (segment 2), 4, 5 (segment 3) and 6 (no segment)
    xs = [0, 1, 2, 3, 4, 5, 6]
    pos = np.array([[0.5, 0.5, x + 0.5] for x in xs])
    sk = Skeletons(pos, np.array([[0, 1], [1, 2], [3, 4], [4, 5], [5, 6]]), ids=np.array([5, 5, 5, 7, 7, 7, 7]))
    return seg, sk


def test_select_pseudo_labels_by_hand():
    seg, sk = _row_case()
    got = select_pseudo_labels(seg, sk, voxel_size=(1, 1, 1))
    # segment 1 -> skeleton 5, segment 2 (nodes of 5 and 7: a merge) and segment 4 (no node) unlabelled,
    # segment 3 -> skeleton 7, segment 0 stays 0
    np.testing.assert_array_equal(got.labels[0, 0], [5, 5, 0, 0, 7, 7, 0, 0])
    np.testing.assert_array_equal(got.kept, [1, 3])
    np.testing.assert_array_equal(got.rejected, [2])
    assert got.n_skeletons == 2
    assert got.labelled_fraction == pytest.approx(4 / 8)
    # every segment here holds at most 2 nodes of its skeleton: min_nodes 3 keeps nothing
    assert not select_pseudo_labels(seg, sk, voxel_size=(1, 1, 1), min_nodes=3).labels.any()
    assert seg.tolist() == [[[1, 1, 2, 2, 3, 3, 0, 4]]]  # input unchanged


def test_select_pseudo_labels_split_segments_share_the_id():
    # a skeleton split over two segments: both get its id (training on them teaches the join)
    seg = np.array([[[1, 1, 2, 2]]], np.uint64)
    sk = Skeletons(np.array([[0.5, 0.5, x + 0.5] for x in range(4)]), np.array([[0, 1], [1, 2], [2, 3]]),
                   ids=np.array([3, 3, 3, 3]))
    np.testing.assert_array_equal(select_pseudo_labels(seg, sk, voxel_size=(1, 1, 1)).labels[0, 0], [3, 3, 3, 3])


def test_select_pseudo_labels_nodes_outside_and_errors():
    seg, sk = _row_case()
    outside = Skeletons(np.concatenate([sk.positions, [[0.5, 0.5, 50.0]]]), sk.edges,
                        ids=np.array([5, 5, 5, 7, 7, 7, 7, 9]))
    np.testing.assert_array_equal(select_pseudo_labels(seg, outside, voxel_size=(1, 1, 1)).labels,
                                  select_pseudo_labels(seg, sk, voxel_size=(1, 1, 1)).labels)
    empty = Skeletons(np.zeros((0, 3)), np.zeros((0, 2), np.int64))
    assert not select_pseudo_labels(seg, empty, voxel_size=(1, 1, 1)).labels.any()
    with pytest.raises(ValueError, match="min_nodes must be a positive"):
        select_pseudo_labels(seg, sk, voxel_size=(1, 1, 1), min_nodes=0)
    with pytest.raises((TypeError, ValueError), match="segmentation"):
        select_pseudo_labels(seg.astype(np.float32), sk, voxel_size=(1, 1, 1))


@settings(max_examples=40)
@given(seg=hnp.arrays(np.uint8, (2, 3, 4), elements=st.integers(0, 4)),
       nodes=hnp.arrays(np.int64, (6, 3), elements=st.integers(0, 3)),
       ids=hnp.arrays(np.int64, 6, elements=st.integers(1, 3)), min_nodes=st.integers(1, 3))
def test_select_pseudo_labels_equals_reference(seg, nodes, ids, min_nodes):
    vs, off = (10.0, 20.0, 5.0), (7.0, -3.0, 0.0)
    pos = off + (nodes + 0.25) * np.asarray(vs)  # some nodes fall outside (z up to 3 > 1)
    sk = Skeletons(pos, np.zeros((0, 2), np.int64), ids=ids)
    got = select_pseudo_labels(seg, sk, voxel_size=vs, offset=off, min_nodes=min_nodes)
    np.testing.assert_array_equal(got.labels, ref_select_pseudo_labels(seg, pos, ids, vs, off, min_nodes))


def test_node_voxels():
    sk = Skeletons(np.array([[0.0, 9.99, 10.0], [-0.1, 0, 0], [30, 0, 0]]), np.zeros((0, 2), np.int64))
    vox, inside = node_voxels(sk, (3, 2, 2), voxel_size=(10, 10, 10))
    np.testing.assert_array_equal(vox, [[0, 0, 1], [0, 0, 0], [2, 0, 0]])
    np.testing.assert_array_equal(inside, [True, False, False])


# ------------------------------------------------------------------------------ the union
def test_skeleton_label_volume_by_hand():
    sk = _line_along_z()
    pseudo = np.zeros((5, 5, 5), np.uint64)
    pseudo[:, 1:4, 0:5] = 1      # a segment of skeleton 1 that leaks to x = 0 and x = 4
    pseudo[:, 0, 0] = 9          # a pseudo-label far from the skeleton (mined there)
    labels, labelled = skeleton_label_volume(sk, (5, 5, 5), voxel_size=(1, 1, 1), radius=1.0, margin=2.5,
                                             pseudo_labels=pseudo)
    tube = rasterize_skeletons(sk, (5, 5, 5), voxel_size=(1, 1, 1), radius=1.0)
    bg = mine_background(sk, (5, 5, 5), voxel_size=(1, 1, 1), margin=2.5)
    assert bg[:, 0, 0].all() and not bg[:, 1:4, 1:4].any()
    np.testing.assert_array_equal(labels[tube != 0], 1)
    np.testing.assert_array_equal(labels[bg], 0)
    np.testing.assert_array_equal(labelled[bg], True)
    # pseudo voxels not mined keep their label: (y, x) = (1, 0) is sqrt(5) < 2.5 from the line
    assert labels[0, 1, 0] == 1 and labelled[0, 1, 0]
    # unknown: not in a tube, not pseudo-labelled, not mined, e.g. (y, x) = (0, 1) at distance sqrt(5)
    assert not labelled[0, 0, 1] and labels[0, 0, 1] == 0
    # without pseudo-labels and margin: the tubes alone
    labels, labelled = skeleton_label_volume(sk, (5, 5, 5), voxel_size=(1, 1, 1), radius=1.0)
    np.testing.assert_array_equal(labels, tube)
    np.testing.assert_array_equal(labelled, tube != 0)
    # extra background: labelled 0 except in a tube
    extra = np.zeros((5, 5, 5), bool)
    extra[:, 2, 1:4] = True  # (2, 2) is the line, the only tube voxel at radius 0.5
    extra[:, 0, 2] = True
    labels, labelled = skeleton_label_volume(sk, (5, 5, 5), voxel_size=(1, 1, 1), radius=0.5, background=extra)
    np.testing.assert_array_equal(labels[:, 2, 2], 1)
    assert (labels[:, 2, 1] == 0).all() and labelled[:, 2, 1].all() and labelled[:, 0, 2].all()
    with pytest.raises(ValueError, match="background must be a bool array"):
        skeleton_label_volume(sk, (5, 5, 5), voxel_size=(1, 1, 1), background=extra.astype(np.uint8))
    with pytest.raises(ValueError, match="margin must be larger than radius"):
        skeleton_label_volume(sk, (5, 5, 5), voxel_size=(1, 1, 1), radius=2.0, margin=1.0)
    with pytest.raises(ValueError, match="pseudo_labels must have shape"):
        skeleton_label_volume(sk, (5, 5, 5), voxel_size=(1, 1, 1), pseudo_labels=np.zeros((2, 2, 2), np.uint64))


# ------------------------------------------------------------------------------ dark background
def test_dark_background_by_hand():
    from xpress_fast.unet.labels import dark_background

    raw = np.full((4, 6, 6), 120, np.uint8)
    tubes = np.zeros(raw.shape, np.uint64)
    tubes[:, 2:4, 2:4] = 1
    raw[:, 2:4, 2:4] = np.arange(100, 116, dtype=np.uint8).reshape(4, 2, 2)  # tube 100 .. 115
    raw[:, 0, :] = 50     # a dark sheath
    raw[:, 2, 2] = 40     # a dark tube voxel stays out of the background
    raw[:, 5, 5] = 105    # darker than most tube voxels, not than the quantile
    got = dark_background(raw, tubes, quantile=30, sigma=0)
    # sorted tube voxels: four 40s, 101, 102, ...; the 30 % quantile (position 4.5 of 0..15) is 101.5
    want = np.zeros(raw.shape, bool)
    want[:, 0, :] = True
    np.testing.assert_array_equal(got, want)
    # quantile 50: the median of the tube voxels, (105 + 106) / 2, is above 105 and 50, below 120
    got = dark_background(raw, tubes, quantile=50, sigma=0)
    want[:, 5, 5] = True
    np.testing.assert_array_equal(got, want)
    assert not got[tubes != 0].any()
    assert not dark_background(raw, np.zeros_like(tubes)).any()  # no tube: nothing known


def test_dark_background_bad_input():
    from xpress_fast.unet.labels import dark_background

    raw = np.zeros((4, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="one shape"):
        dark_background(raw, np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="quantile must be a percentage"):
        dark_background(raw, np.ones((4, 4, 4)), quantile=0)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        dark_background(raw, np.ones((4, 4, 4)), sigma=-1)
