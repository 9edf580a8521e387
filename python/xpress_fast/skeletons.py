"""Skeletons as arrays, and safe loading of the challenge's skeleton files.

The XPRESS ground truth is a ``networkx.Graph`` whose nodes carry ``position = (x, y, z)`` in nm,
pickled into files named ``*.npz``. Unpickling such a file with ``np.load(allow_pickle=True)`` runs
whatever code the file names; :func:`load_skeletons` instead uses a restricted unpickler that
admits only the classes such a file holds (networkx graphs, numpy arrays and scalars, builtin
containers) and refuses anything else.
"""
from __future__ import annotations

import io
import os
import pickle
import zipfile
from typing import Any

import numpy as np

from ._validate import as_array

__all__ = ["Skeletons", "load_skeletons", "save_skeletons", "as_skeletons"]


class Skeletons:
    """Skeleton graphs as arrays: node positions in nm (z, y, x) and undirected edges.

    Parameters
    ----------
    positions : (N, 3) array_like of float
        Node positions in nm, **z y x** (the challenge's graphs store x y z: use
        :meth:`from_networkx`, which converts).
    edges : (E, 2) array_like of int
        Node index pairs (indices into ``positions``). The graph is simple and undirected, as a
        ``networkx.Graph``: repeated edges (in either direction) are kept once.
    node_ids : (N,) array_like of int, optional
        The original node ids (reported in split/merge locations); default ``arange(N)``.
    ids : (N,) array_like of int, optional
        A skeleton id per node, as carried by the source. The official scores ignore it and use
        connected components instead (METRICS.md).
    """

    def __init__(self, positions, edges, *, node_ids=None, ids=None):
        pos = as_array("positions", positions)
        if pos.ndim != 2 or pos.shape[1] != 3:
            raise ValueError(f"positions must have shape (N, 3) (z, y, x in nm); got {pos.shape}")
        if pos.dtype.kind not in "iuf":
            raise TypeError(f"positions must be numeric; got dtype {pos.dtype}")
        pos = np.array(pos, dtype=np.float64)  # our own copy
        if not np.all(np.isfinite(pos)):
            bad = int(np.argwhere(~np.isfinite(pos).all(axis=1))[0, 0])
            raise ValueError(f"positions must be finite; node {bad} has position {pos[bad].tolist()}")
        n = pos.shape[0]

        e = as_array("edges", edges)
        if e.size == 0:
            e = np.zeros((0, 2), dtype=np.int64)
        if e.ndim != 2 or e.shape[1] != 2:
            raise ValueError(f"edges must have shape (E, 2); got {e.shape}")
        if e.dtype.kind not in "iu":
            if e.dtype.kind == "f" and np.all(np.isfinite(e)) and np.all(e == np.round(e)):
                e = e.astype(np.int64)
            else:
                raise TypeError(f"edges must hold integer node indices; got dtype {e.dtype}")
        e = np.array(e, dtype=np.int64)
        if e.size and (e.min() < 0 or e.max() >= n):
            bad = int(np.argwhere((e < 0) | (e >= n))[0, 0])
            raise ValueError(
                f"edges refer to missing nodes: edge {bad} is {e[bad].tolist()} but there are {n} nodes"
            )
        self.positions = pos
        self.edges = _unique_undirected(e)

        if node_ids is None:
            self.node_ids = np.arange(n, dtype=np.int64)
        else:
            nid = as_array("node_ids", node_ids)
            if nid.shape != (n,) or nid.dtype.kind not in "iu":
                raise ValueError(f"node_ids must be ({n},) integers; got shape {nid.shape}, dtype {nid.dtype}")
            self.node_ids = np.array(nid, dtype=np.int64)
            if np.unique(self.node_ids).size != n:
                raise ValueError("node_ids must be unique; got repeated ids")
        if ids is None:
            self.ids = None
        else:
            sid = as_array("ids", ids)
            if sid.shape != (n,) or sid.dtype.kind not in "iu":
                raise ValueError(f"ids must be ({n},) integers; got shape {sid.shape}, dtype {sid.dtype}")
            self.ids = np.array(sid, dtype=np.int64)
        for arr in (self.positions, self.edges, self.node_ids) + ((self.ids,) if self.ids is not None else ()):
            arr.flags.writeable = False
        self._components = None

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_networkx(cls, graph, *, position_attribute: str = "position", position_order: str = "xyz",
                      id_attribute: str | None = None) -> "Skeletons":
        """From a ``networkx.Graph`` whose nodes carry a position (the challenge's format).

        Node order and edge order follow the graph's iteration order (which the official scores
        depend on). ``position_order`` says how the attribute is stored (``"xyz"`` in the
        challenge files, or ``"zyx"``).
        """
        import networkx as nx

        if not isinstance(graph, nx.Graph):
            raise TypeError(f"graph must be a networkx.Graph; got {type(graph).__name__}")
        if position_order not in ("xyz", "zyx"):
            raise ValueError(f"position_order must be 'xyz' or 'zyx'; got {position_order!r}")
        if graph.is_directed():
            graph = graph.to_undirected(as_view=True)
        nodes = list(graph.nodes)
        index = {node: i for i, node in enumerate(nodes)}
        ids = np.empty(len(nodes), dtype=np.int64) if id_attribute else None
        positions = None
        if ids is None and nodes:  # fast path: one array conversion; the loop below explains failures
            try:
                fast = np.array([data[position_attribute] for _, data in graph.nodes(data=True)], dtype=np.float64)
                if fast.shape == (len(nodes), 3):
                    positions = np.ascontiguousarray(fast[:, ::-1] if position_order == "xyz" else fast)
            except (KeyError, TypeError, ValueError):
                pass
        slow = positions is None
        if slow:
            positions = np.empty((len(nodes), 3), dtype=np.float64)
        for i, (node, data) in enumerate(graph.nodes(data=True) if slow else ()):
            if position_attribute not in data:
                raise ValueError(f"graph node {node!r} has no {position_attribute!r} attribute")
            try:
                p = np.asarray(data[position_attribute], dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(
                    f"graph node {node!r}: {position_attribute!r} must be three numbers; got {data[position_attribute]!r}"
                ) from None
            if p.shape != (3,):
                raise ValueError(f"graph node {node!r}: {position_attribute!r} must be three numbers; got {p.tolist()}")
            positions[i] = p[::-1] if position_order == "xyz" else p
            if ids is not None:
                if id_attribute not in data:
                    raise ValueError(f"graph node {node!r} has no {id_attribute!r} attribute")
                ids[i] = int(data[id_attribute])
        edges = np.array([(index[u], index[v]) for u, v in graph.edges()], dtype=np.int64).reshape(-1, 2)
        if all(isinstance(node, (int, np.integer)) and not isinstance(node, bool) for node in nodes):
            node_ids = np.array(nodes, dtype=np.int64)
        else:
            node_ids = None
        return cls(positions, edges, node_ids=node_ids, ids=ids)

    def to_networkx(self):
        """A ``networkx.Graph`` in the challenge's format: ``position = (x, y, z)`` nm per node."""
        import networkx as nx

        graph = nx.Graph()
        for nid, p in zip(self.node_ids.tolist(), self.positions):
            graph.add_node(nid, position=(float(p[2]), float(p[1]), float(p[0])))
        graph.add_edges_from((int(self.node_ids[u]), int(self.node_ids[v])) for u, v in self.edges)
        if self.ids is not None:
            for nid, sid in zip(self.node_ids.tolist(), self.ids.tolist()):
                graph.nodes[nid]["id"] = sid
        return graph

    # -- properties ----------------------------------------------------------------------------
    @property
    def n_nodes(self) -> int:
        return int(self.positions.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.edges.shape[0])

    def component_ids(self) -> np.ndarray:
        """Connected components, numbered 0, 1, ... by their first node (networkx's order)."""
        if self._components is None:
            from . import _metrics

            comp = _metrics.components(self.n_nodes, self.edges)
            comp.flags.writeable = False
            self._components = comp
        return self._components

    @property
    def n_skeletons(self) -> int:
        """Number of connected components (isolated nodes included)."""
        comp = self.component_ids()
        return int(comp.max()) + 1 if comp.size else 0

    def edge_lengths(self) -> np.ndarray:
        """Euclidean length of each edge in nm."""
        d = self.positions[self.edges[:, 0]] - self.positions[self.edges[:, 1]]
        return np.sqrt(np.einsum("ij,ij->i", d, d))

    def __len__(self) -> int:
        return self.n_nodes

    def __repr__(self) -> str:
        return f"Skeletons(n_nodes={self.n_nodes}, n_edges={self.n_edges}, n_skeletons={self.n_skeletons})"


def _unique_undirected(edges: np.ndarray) -> np.ndarray:
    """Drop repeated undirected edges, keeping the first occurrence and its order."""
    if edges.shape[0] < 2:
        return edges
    key = np.sort(edges, axis=1)
    _, first = np.unique(key, axis=0, return_index=True)
    if first.size == edges.shape[0]:
        return edges
    return edges[np.sort(first)]


def as_skeletons(skeletons, name: str = "skeletons") -> Skeletons:
    """Accept a :class:`Skeletons` or a challenge-format ``networkx.Graph``."""
    if isinstance(skeletons, Skeletons):
        return skeletons
    try:
        import networkx as nx
    except ImportError:  # pragma: no cover - networkx is a dependency
        nx = None
    if nx is not None and isinstance(skeletons, nx.Graph):
        return Skeletons.from_networkx(skeletons)
    raise TypeError(f"{name} must be xpress_fast.Skeletons or a networkx.Graph; got {type(skeletons).__name__}")


# -- files ---------------------------------------------------------------------------------------
# (module, name) pairs a pickled networkx skeleton graph may reference; nothing else is built.
# Python 2-era protocols name the same things copy_reg / __builtin__, and encode bytes with
# _codecs.encode (a str-to-bytes conversion, no code).
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("copyreg", "_reconstructor"),
    ("copy_reg", "_reconstructor"),
    ("builtins", "object"),
    ("__builtin__", "object"),
    ("builtins", "set"),
    ("__builtin__", "set"),
    ("builtins", "frozenset"),
    ("__builtin__", "frozenset"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),
}
# networkx modules whose own classes (graphs and the views a graph caches in its __dict__) may
# appear; only classes defined there, looked up by plain name (no dotted paths to other objects).
_NETWORKX_CLASS_MODULES = {
    "networkx.classes.graph", "networkx.classes.digraph", "networkx.classes.multigraph",
    "networkx.classes.multidigraph", "networkx.classes.reportviews", "networkx.classes.coreviews",
}


class _SkeletonUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if module in _NETWORKX_CLASS_MODULES and name.isidentifier():
            import importlib

            obj = getattr(importlib.import_module(module), name, None)
            if isinstance(obj, type) and obj.__module__ == module:
                return obj
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def load_skeletons(path, *, position_attribute: str = "position") -> Skeletons:
    """Read skeletons from a challenge file, without executing code from it.

    Accepts the challenge's ``.npz`` files (a pickled ``networkx.Graph`` whose nodes carry
    ``position = (x, y, z)`` nm), read with a restricted unpickler, and the array form written by
    :func:`save_skeletons` with ``fmt="arrays"`` (a real ``.npz`` archive with ``positions_zyx``,
    ``edges`` and optional ``node_ids`` / ``ids``).

    Raises
    ------
    ValueError
        The file is corrupt, truncated, or references anything beyond networkx/numpy/builtin
        containers (a hostile pickle) — nothing from it is executed.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ValueError(f"cannot read skeleton file {path!r}: {exc}") from None
    if data[:4] == b"PK\x03\x04":
        return _load_array_npz(path, data)
    try:
        obj = _SkeletonUnpickler(io.BytesIO(data)).load()
    except Exception as exc:  # any failure of an untrusted file is the file's fault
        raise ValueError(f"{path!r} is not a valid skeleton file: {exc}") from None
    import networkx as nx

    if not isinstance(obj, nx.Graph):
        raise ValueError(f"{path!r} holds a {type(obj).__name__}, not a networkx graph of skeletons")
    try:
        return Skeletons.from_networkx(obj, position_attribute=position_attribute)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path!r}: {exc}") from None


def _load_array_npz(path: str, data: bytes) -> Skeletons:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{path!r} is not a valid skeleton archive: {exc}") from None
    missing = {"positions_zyx", "edges"} - set(arrays)
    if missing:
        raise ValueError(f"{path!r} lacks arrays {sorted(missing)} (has {sorted(arrays)})")
    try:
        return Skeletons(arrays["positions_zyx"], arrays["edges"], node_ids=arrays.get("node_ids"),
                         ids=arrays.get("ids"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path!r}: {exc}") from None


def save_skeletons(skeletons, path, *, fmt: str = "networkx") -> None:
    """Write skeletons: ``fmt="networkx"`` is the challenge's format (a pickled graph, positions
    x y z nm); ``fmt="arrays"`` a plain ``.npz`` archive readable without pickle. Written to a
    temporary name and moved into place, so no half-written file is left behind."""
    skeletons = as_skeletons(skeletons)
    if fmt not in ("networkx", "arrays"):
        raise ValueError(f"fmt must be 'networkx' or 'arrays'; got {fmt!r}")
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            if fmt == "networkx":
                pickle.dump(skeletons.to_networkx(), f, protocol=4)
            else:
                arrays = {"positions_zyx": skeletons.positions, "edges": skeletons.edges,
                          "node_ids": skeletons.node_ids}
                if skeletons.ids is not None:
                    arrays["ids"] = skeletons.ids
                np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
