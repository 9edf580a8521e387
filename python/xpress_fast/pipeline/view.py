"""A neuroglancer view of the pipeline's outputs: raw, affinities, fragments, segmentations,
skeletons, and the split and merge sites of each segmentation as annotations.

:func:`find_outputs` says what a pipeline output holds; :func:`view_outputs` serves it from
neuroglancer's own web server (the ``neuroglancer`` package ships its client; the ``[view]``
extra installs it) and returns the viewer, whose ``get_viewer_url()`` the browser opens.

Two layouts are understood:

* a demo directory (``xpress-fast demo --out DIR``): ``DIR/data.zarr`` (``raw``,
  ``affinities``), ``DIR/segmentation.zarr`` (``fragments``, ``segmentation_<t>``),
  ``DIR/skeletons.npz`` and ``DIR/summary.json`` (whose best threshold is shown by default);
* a ``segment`` output container (``xpress-fast segment ... --out OUT.zarr``): ``fragments`` and
  ``segmentation_<t>`` in it; the affinities are the run's input (recorded in
  ``OUT.zarr/.xpress_fast/run.json``) and the raw is a ``raw`` dataset beside them, if there is one.

What is read: the volumes are served lazily, chunk by chunk as the browser asks for them
(neuroglancer downsamples on the fly, reading the full-resolution voxels of the chunk it
serves); nothing is read up front except the labels under the skeleton nodes (to find the split
and merge sites). The 3-D meshes of a segment are made from the whole label volume, read into
memory when the browser first asks for one: only for volumes of at most
:data:`MESH_MAX_VOXELS` voxels; a larger volume has no meshes (the 2-D views still work).

neuroglancer runs one web server per process (its own global state, not this package's): the
first viewer starts it on ``bind_address``/``port``; ``neuroglancer.stop()`` ends it.
"""
from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .._extras import require

log = logging.getLogger(__name__)

__all__ = ["PipelineOutputs", "find_outputs", "view_outputs", "MESH_MAX_VOXELS"]

#: What ``xpress-fast demo --out DIR`` writes (see :func:`xpress_fast.pipeline.demo.run_demo`).
DEMO_DATA, DEMO_SEGMENTATION, DEMO_SKELETONS, DEMO_SUMMARY = "data.zarr", "segmentation.zarr", "skeletons.npz", \
    "summary.json"
#: Segmentation volumes of at most this many voxels get 3-D meshes (read whole into memory).
MESH_MAX_VOXELS = 256 ** 3
_SEGMENTATION = re.compile(r"^segmentation_(.+)$")
_AFFINITY_SHADER = """\
void main() {
  emitRGB(vec3(toNormalized(getDataValue(0)), toNormalized(getDataValue(1)), toNormalized(getDataValue(2))));
}
"""


@dataclass(frozen=True)
class PipelineOutputs:
    """What a pipeline output holds (see :func:`find_outputs`).

    Attributes
    ----------
    container : Path
        The zarr container of the fragments and segmentations.
    fragments : str or None
        The fragments' dataset in ``container`` (None: a mutex watershed output has none).
    segmentations : dict
        threshold (float) -> dataset name in ``container``, by increasing threshold.
    raw, affinities : (Path, str) or None
        Container and dataset.
    skeletons : Path or None
    best_threshold : float or None
        The demo's best threshold (``summary.json``), if any.
    """

    container: Path
    fragments: Optional[str]
    segmentations: dict
    raw: Optional[tuple]
    affinities: Optional[tuple]
    skeletons: Optional[Path]
    best_threshold: Optional[float]


def _datasets(container: Path) -> tuple:
    """(fragments or None, {threshold: name}) of the complete volumes in a segment container."""
    fragments = "fragments" if (container / "fragments").is_dir() else None
    segs = {}
    for p in container.iterdir() if container.is_dir() else ():
        m = _SEGMENTATION.match(p.name)
        if m is None or not p.is_dir():
            continue
        try:
            t = float(m.group(1))
        except ValueError:
            continue
        segs[t] = p.name
    return fragments, dict(sorted(segs.items()))


def _dataset_in(path: Path, dataset: str) -> Optional[tuple]:
    from ..io import dataset_exists

    try:
        return (path, dataset) if dataset_exists(path, dataset) else None
    except (OSError, ValueError):
        return None


def find_outputs(directory) -> PipelineOutputs:
    """Find the volumes and skeletons of a demo directory or a ``segment`` output container.

    Raises
    ------
    FileNotFoundError
        ``directory`` does not exist.
    ValueError
        ``directory`` holds no fragments and no segmentation (not a pipeline output).
    """
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"directory not found: {str(directory)!r}")
    demo = (directory / DEMO_SEGMENTATION).is_dir()
    container = directory / DEMO_SEGMENTATION if demo else directory
    fragments, segs = _datasets(container)
    if fragments is None and not segs:
        raise ValueError(f"directory must be a pipeline output (a demo directory holding {DEMO_SEGMENTATION}, or "
                         f"a 'segment' output .zarr holding fragments and segmentation_<t>); {str(directory)!r} "
                         "holds neither")
    raw = affinities = skeletons = best = None
    if demo:
        data = directory / DEMO_DATA
        raw, affinities = _dataset_in(data, "raw"), _dataset_in(data, "affinities")
        if (directory / DEMO_SKELETONS).is_file():
            skeletons = directory / DEMO_SKELETONS
        try:
            best = float(json.loads((directory / DEMO_SUMMARY).read_text())["best"]["threshold"])
        except (OSError, ValueError, KeyError, TypeError):
            best = None
    else:
        from .runner import WORK

        try:  # the run's input: [path, dataset]
            path, dataset = json.loads((container / WORK / "run.json").read_text())["affinities"]
            affinities = _dataset_in(Path(path), str(dataset))
        except (OSError, ValueError, KeyError, TypeError):
            affinities = None
        if affinities is not None:
            raw = _dataset_in(affinities[0], "raw")
    return PipelineOutputs(container, fragments, segs, raw, affinities, skeletons, best)


def _chosen(outputs: PipelineOutputs, thresholds) -> list:
    """[(threshold, dataset)] of the segmentations to show."""
    available = outputs.segmentations
    if thresholds is None:
        if outputs.best_threshold is not None and outputs.best_threshold in available:
            return [(outputs.best_threshold, available[outputs.best_threshold])]
        return list(available.items())
    values = np.atleast_1d(np.asarray(thresholds, dtype=object))
    if values.size == 0:
        raise ValueError("thresholds must hold at least one threshold (or be None: the default)")
    chosen = []
    for t in values.tolist():
        try:
            t = float(t)
        except (TypeError, ValueError):
            raise TypeError(f"thresholds must be numbers; got {t!r}") from None
        match = [a for a in available if math.isclose(a, t, rel_tol=0, abs_tol=1e-9)]
        if not match:
            have = ", ".join(f"{a:g}" for a in available) or "none"
            raise ValueError(f"thresholds: no segmentation at {t:g} in {str(outputs.container)!r}; "
                             f"available: {have}")
        if (match[0], available[match[0]]) not in chosen:
            chosen.append((match[0], available[match[0]]))
    return chosen


def _voxel_offset(vol, what: str) -> np.ndarray:
    steps = np.asarray(vol.offset, float) / np.asarray(vol.voxel_size, float)
    if not np.allclose(steps, np.round(steps), rtol=0, atol=1e-6):
        raise ValueError(f"{what}: its offset {list(vol.offset)} nm must be a whole number of voxels "
                         f"({list(vol.voxel_size)} nm) to be shown")
    return np.round(steps).astype(np.int64)


class _Lazy:
    """An h5py/zarr array as neuroglancer's ``LocalVolume`` reads it: shape, dtype, slices;
    ``transpose()`` (only the mesh generator calls it) reads the whole array."""

    def __init__(self, data):
        self._data = data
        self.shape = tuple(int(s) for s in data.shape)
        self.dtype = np.dtype(data.dtype)

    def __getitem__(self, item):
        return np.ascontiguousarray(self._data[item])

    def transpose(self):
        return np.asarray(self._data[...]).transpose()


def _local_volume_class(ng):
    local_volume: Any = ng.LocalVolume  # neuroglancer ships no types

    class LazyVolume(local_volume):
        """A LocalVolume whose meshes are refused for volumes over MESH_MAX_VOXELS."""

        def get_object_mesh(self, object_id):
            if self.volume_type != "segmentation" or math.prod(self.shape) > MESH_MAX_VOXELS:
                raise ng.local_volume.MeshesNotSupportedForVolume()
            return super().get_object_mesh(object_id)

    return LazyVolume


def _skeleton_source(ng, skeletons, dimensions):
    """Skeletons as a neuroglancer skeleton source: object ``k + 1`` is connected component ``k``."""
    comp = skeletons.component_ids()
    node_order = np.argsort(comp, kind="stable")
    node_starts = np.searchsorted(comp[node_order], np.arange(skeletons.n_skeletons + 1))
    edge_comp = comp[skeletons.edges[:, 0]] if skeletons.n_edges else np.zeros(0, np.int64)
    edge_order = np.argsort(edge_comp, kind="stable")
    edge_starts = np.searchsorted(edge_comp[edge_order], np.arange(skeletons.n_skeletons + 1))

    skeleton_source: Any = ng.skeleton.SkeletonSource  # neuroglancer ships no types

    class Source(skeleton_source):
        def get_skeleton(self, object_id):
            k = int(object_id) - 1
            if not 0 <= k < skeletons.n_skeletons:
                return None
            nodes = node_order[node_starts[k]:node_starts[k + 1]]  # increasing
            edges = skeletons.edges[edge_order[edge_starts[k]:edge_starts[k + 1]]]
            return ng.skeleton.Skeleton(skeletons.positions[nodes], np.searchsorted(nodes, edges))

    return Source(dimensions)


def _sites(index, segmentation) -> tuple:
    """(split annotations' data, merge annotations' data) of one segmentation scored with the
    SkeletonIndex ``index``, each a list of dicts; reads only the labels under the nodes."""
    from ..sweeps import node_fragment_ids

    skeletons = index.skeletons
    labels = node_fragment_ids(segmentation, index.node_voxels)
    scores = index.score_node_labels(labels)
    node_label = np.zeros(skeletons.n_nodes, np.uint64)
    node_label[index.nodes] = labels
    comp = skeletons.component_ids()
    by_id = np.argsort(skeletons.node_ids, kind="stable")

    def node_index(ids):
        return by_id[np.searchsorted(skeletons.node_ids, np.asarray(ids), sorter=by_id)]

    splits = []
    loc = scores.split_locations
    for ids, pos in zip(loc["node_ids"], loc["positions"]):
        a, b = node_index(ids)
        la, lb = int(node_label[a]), int(node_label[b])
        splits.append({"point": pos.mean(axis=0), "segments": sorted({la, lb} - {0}),
                       "description": f"split: skeleton {int(comp[a]) + 1}, nodes {int(ids[0])}-{int(ids[1])}, "
                                      f"segments {la} | {lb}"})
    merges = []
    loc = scores.merge_locations
    for ids, pos, label, dist in zip(loc["node_ids"], loc["positions"], loc["label"], loc["distance"]):
        a, b = node_index(ids)
        merges.append({"point_a": pos[0], "point_b": pos[1], "segments": [int(label)] if label else [],
                       "description": f"merge: segment {int(label)} holds skeletons {int(comp[a]) + 1} and "
                                      f"{int(comp[b]) + 1} (nodes {int(ids[0])}, {int(ids[1])}, "
                                      f"{float(dist):.0f} nm apart)"})
    return splits, merges


def _start_server(ng, bind_address: str, port: int) -> None:
    running = ng.server.global_server
    if running is not None:
        same = getattr(running, "_bind_address", bind_address) == bind_address and port in (0, running.port)
        if not same:
            raise ValueError(f"bind_address/port: neuroglancer's server already runs at {running.server_url} in this "
                             f"process; call neuroglancer.stop() first to serve on {bind_address}:{port}")
        return
    _check_free(bind_address, port)
    ng.set_server_bind_address(bind_address, port)
    try:
        ng.server.start()
    except OSError as exc:  # taken since the check
        raise ValueError(f"port: cannot serve on {bind_address}:{port}: {exc.strerror or exc}") from None


def _check_free(bind_address: str, port: int) -> None:
    """ValueError unless the server can listen on ``bind_address:port`` (checked before tornado
    tries, which leaves its socket open when it cannot bind)."""
    import socket

    try:
        addresses = socket.getaddrinfo(bind_address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ValueError(f"bind_address: cannot resolve {bind_address!r}: {exc.strerror or exc}") from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as tornado binds
            try:
                sock.bind(address)
            except OSError as exc:
                raise ValueError(f"port: cannot serve on {bind_address}:{port}: {exc.strerror or exc}") from None


def view_outputs(
    directory,
    *,
    thresholds: Optional[Sequence[float]] = None,
    skeletons=None,
    raw: Optional[tuple] = None,
    bind_address: str = "127.0.0.1",
    port: int = 0,
):
    """Serve a pipeline output in neuroglancer; returns the ``neuroglancer.Viewer``.

    Layers: ``raw`` (image), ``affinities`` (the first three channels, the nearest-neighbour
    ones, as red/green/blue), ``fragments`` and ``segmentation_<t>`` (segmentations; the
    first shown, the others hidden), ``skeletons`` (a skeleton source; object ``k + 1`` is
    connected component ``k``), and for each segmentation ``splits_<t>`` (a point at the middle
    of each split skeleton edge, linked to the two segments) and ``merges_<t>`` (a line between
    the closest nodes of each pair of skeletons one segment holds), scored as
    :func:`xpress_fast.xpress_scores` does (official mode, the whole volume). Each layer carries
    its own voxel size (nm, z y x) and offset; annotations and skeletons are in nm.

    Parameters
    ----------
    directory : path
        A demo directory or a ``segment`` output container (see :func:`find_outputs`).
    thresholds : sequence of float, optional
        The segmentations to show (each must have been written). Default: the demo's best
        threshold, or every segmentation the output holds.
    skeletons : path or Skeletons, optional
        Default: the demo's ``skeletons.npz``; a ``segment`` output has none unless given.
    raw : (path, dataset), optional
        The raw volume, when it is not beside the affinities.
    bind_address, port
        Where neuroglancer's server listens (port 0: any free port). Ignored, when they agree,
        if the server already runs in this process.

    Returns
    -------
    neuroglancer.Viewer
        ``viewer.get_viewer_url()`` is the page to open; the server runs in a background
        thread until ``neuroglancer.stop()`` or the end of the process. Keep a reference to the
        viewer: neuroglancer serves a viewer (and its volumes) only while it is alive.

    Raises
    ------
    MissingExtra
        neuroglancer is not installed (``pip install "xpress-fast[view]"``).
    ValueError
        Not a pipeline output; a threshold without a segmentation (the message lists those
        there are); a volume offset that is not a whole number of voxels; the port is taken.
    """
    ng = require("neuroglancer", "the viewer")
    from ..io import check_same_geometry, open_volume
    from ..skeletons import Skeletons, load_skeletons

    if not isinstance(bind_address, str) or not bind_address:
        raise TypeError(f"bind_address must be a host name or address; got {bind_address!r}")
    if not isinstance(port, (int, np.integer)) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer in [0, 65535] (0: any free port); got {port!r}")
    outputs = find_outputs(directory)
    chosen = _chosen(outputs, thresholds)
    if raw is not None:
        if not (isinstance(raw, (tuple, list)) and len(raw) == 2):
            raise TypeError(f"raw must be (path, dataset); got {raw!r}")
        raw = (Path(raw[0]), str(raw[1]))
    else:
        raw = outputs.raw
    if skeletons is None:
        skeletons = outputs.skeletons
    if skeletons is not None and not isinstance(skeletons, Skeletons):
        if not Path(skeletons).is_file():
            raise FileNotFoundError(f"skeletons file not found: {str(skeletons)!r}")
        skeletons = load_skeletons(skeletons)

    volumes = {}  # layer name -> (Volume, kind)
    if raw is not None:
        volumes["raw"] = (open_volume(*raw), "image")
    if outputs.affinities is not None:
        volumes["affinities"] = (open_volume(*outputs.affinities), "affinities")
    if outputs.fragments is not None:
        volumes["fragments"] = (open_volume(outputs.container, outputs.fragments), "segmentation")
    for _, name in chosen:
        volumes[name] = (open_volume(outputs.container, name), "segmentation")
    for name, (vol, kind) in volumes.items():
        want = 4 if kind == "affinities" else 3
        if len(vol.shape) != want:
            raise ValueError(f"{name} must be {'(C, Z, Y, X)' if want == 4 else '(Z, Y, X)'}; got shape {vol.shape}")
    # the segmentations (and fragments) of one run share their geometry: one skeleton index serves them
    check_same_geometry([(name, vol) for name, (vol, kind) in volumes.items() if kind == "segmentation"])
    voxel_offsets = {name: _voxel_offset(vol, name) for name, (vol, _) in volumes.items()}
    reference = volumes[chosen[0][1] if chosen else "fragments"][0]
    sites = {}
    if skeletons is not None and chosen:
        from ..metrics import SkeletonIndex

        index = SkeletonIndex(skeletons, voxel_size=reference.voxel_size, offset=reference.offset,
                              shape=reference.spatial_shape)
        for t, name in chosen:
            sites[t] = _sites(index, volumes[name][0].data)

    _start_server(ng, bind_address, port)
    LazyVolume = _local_volume_class(ng)
    nm = ng.CoordinateSpace(names=["z", "y", "x"], units="nm", scales=[1, 1, 1])
    vs = np.asarray(reference.voxel_size, float)
    centre = (np.asarray(reference.offset, float) + vs * np.asarray(reference.spatial_shape) / 2) / vs
    viewer = ng.Viewer()
    with viewer.txn() as s:
        s.dimensions = ng.CoordinateSpace(names=["x", "y", "z"], units="nm", scales=vs[::-1].tolist())
        s.position = centre[::-1].tolist()
        extent = float(max(reference.spatial_shape))  # voxels: fit the volume to a panel of about 500 pixels
        s.cross_section_scale = extent / 500
        s.projection_scale = extent * 1.5
        s.layout = "4panel"
        shown = chosen[0][1] if chosen else "fragments"  # the one segmentation layer visible
        for name, (vol, kind) in volumes.items():
            names, units, scales = ["z", "y", "x"], ["nm"] * 3, list(vol.voxel_size)
            offset = voxel_offsets[name].tolist()
            if kind == "affinities":
                names, units, scales, offset = ["c^"] + names, [""] + units, [1] + scales, [0] + offset
            source = LazyVolume(_Lazy(vol.data), dimensions=ng.CoordinateSpace(names=names, units=units, scales=scales),
                                voxel_offset=offset, volume_type="image" if kind != "segmentation" else "segmentation")
            if kind == "segmentation":
                s.layers[name] = ng.SegmentationLayer(source=source)
                s.layers[name].visible = name == shown
            elif kind == "affinities":
                s.layers[name] = ng.ImageLayer(source=source, shader=_AFFINITY_SHADER)
                s.layers[name].visible = False
            else:
                s.layers[name] = ng.ImageLayer(source=source)
        if skeletons is not None:
            # white: skeleton k and segment k would otherwise share a colour
            s.layers["skeletons"] = ng.SegmentationLayer(source=_skeleton_source(ng, skeletons, nm),
                                                         segments=list(range(1, skeletons.n_skeletons + 1)),
                                                         segment_default_color="#ffffff")
        for k, (t, name) in enumerate(chosen):
            if t not in sites:
                continue
            splits, merges = sites[t]
            tag = name[len("segmentation_"):]
            s.layers[f"splits_{tag}"] = ng.LocalAnnotationLayer(
                nm, annotation_color="#ff00ff", linked_segmentation_layer={"segments": name},
                annotations=[ng.PointAnnotation(id=f"split{i}", point=a["point"], segments=[a["segments"]],
                                                description=a["description"]) for i, a in enumerate(splits)])
            s.layers[f"merges_{tag}"] = ng.LocalAnnotationLayer(
                nm, annotation_color="#ffff00", linked_segmentation_layer={"segments": name},
                annotations=[ng.LineAnnotation(id=f"merge{i}", point_a=a["point_a"], point_b=a["point_b"],
                                               segments=[a["segments"]], description=a["description"])
                             for i, a in enumerate(merges)])
            for layer in (f"splits_{tag}", f"merges_{tag}"):
                s.layers[layer].visible = k == 0
    log.info("serving %s at %s", directory, viewer.get_viewer_url())
    return viewer
