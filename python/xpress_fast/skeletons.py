"""Skeletons as arrays, and safe loading of the challenge's skeleton files.

The XPRESS ground truth is a ``networkx.Graph`` whose nodes carry ``position = (x, y, z)`` in nm,
pickled into files named ``*.npz``. Unpickling such a file with ``np.load(allow_pickle=True)`` runs
whatever code the file names; :func:`load_skeletons` instead uses a restricted unpickler that
admits only the classes such a file holds (networkx graphs, numpy arrays and scalars, builtin
containers) and refuses anything else.
"""
from __future__ import annotations

import gc
import io
import math
import os
import pickle
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Literal, NoReturn, cast

import numpy as np
import numpy.typing as npt

from ._npz import read_npz
from ._typing import StrPath
from ._validate import as_array

if TYPE_CHECKING:
    import networkx as nx

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
        The original node ids (reported in split/merge locations); default ``arange(N)``. Kept
        as int64, or as uint64 when some id is >= 2**63 and none is negative (exact either way);
        ids that fit neither are refused.
    ids : (N,) array_like of int, optional
        A skeleton id per node, as carried by the source. The official scores ignore it and use
        connected components instead (METRICS.md).
    """

    positions: npt.NDArray[np.float64]
    edges: npt.NDArray[np.int64]
    node_ids: npt.NDArray[np.int64 | np.uint64]
    ids: npt.NDArray[np.int64] | None

    def __init__(self, positions: npt.ArrayLike, edges: npt.ArrayLike, *, node_ids: npt.ArrayLike | None = None,
                 ids: npt.ArrayLike | None = None) -> None:
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
            self.node_ids = _node_id_array(node_ids, n)
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
        self._components: npt.NDArray[np.int64] | None = None

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_networkx(cls, graph: nx.Graph, *, position_attribute: str = "position",
                      position_order: Literal["xyz", "zyx"] = "xyz", id_attribute: str | None = None) -> Skeletons:
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
        positions: npt.NDArray[np.float64] | None = None
        if ids is None and nodes:  # fast path: one array conversion; the loop below explains failures
            try:
                fast = np.array([data[position_attribute] for _, data in graph.nodes(data=True)])
                if fast.shape == (len(nodes), 3) and fast.dtype.kind in "iuf":
                    fast = fast.astype(np.float64)
                    positions = np.ascontiguousarray(fast[:, ::-1] if position_order == "xyz" else fast)
            except Exception:  # whatever the attributes are, the loop below says what is wrong
                pass
        slow = positions is None
        if positions is None:
            positions = np.empty((len(nodes), 3), dtype=np.float64)
        for i, (node, data) in enumerate(graph.nodes(data=True) if slow else ()):
            if not isinstance(data, Mapping):
                raise ValueError(f"graph node {_brief(node)}: attributes must be a dict; got {type(data).__name__}")
            if position_attribute not in data:
                raise ValueError(f"graph node {_brief(node)} has no {position_attribute!r} attribute")
            p = _three_numbers(data[position_attribute])
            if p is None:
                raise ValueError(f"graph node {_brief(node)}: {position_attribute!r} must be three numbers; "
                                 f"got {_brief(data[position_attribute])}")
            positions[i] = p[::-1] if position_order == "xyz" else p
            if ids is not None:
                if id_attribute not in data:
                    raise ValueError(f"graph node {_brief(node)} has no {id_attribute!r} attribute")
                try:
                    ids[i] = int(data[id_attribute])
                except Exception:
                    raise ValueError(f"graph node {_brief(node)}: {id_attribute!r} must be an integer; "
                                     f"got {_brief(data[id_attribute])}") from None
        pairs = []
        for u, v in graph.edges():
            if u not in index or v not in index:  # only a damaged graph has edges to nodes it lacks
                raise ValueError(f"graph edge ({_brief(u)}, {_brief(v)}) refers to a node the graph does not have")
            pairs.append((index[u], index[v]))
        edges = np.array(pairs, dtype=np.int64).reshape(-1, 2)
        node_ids = None
        if all(isinstance(node, (int, np.integer)) and not isinstance(node, bool) for node in nodes):
            node_ids = _node_id_array([int(node) for node in nodes], len(nodes))
        return cls(positions, edges, node_ids=node_ids, ids=ids)

    def to_networkx(self) -> nx.Graph:
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

    def component_ids(self) -> npt.NDArray[np.int64]:
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

    def edge_lengths(self) -> npt.NDArray[np.float64]:
        """Euclidean length of each edge in nm."""
        d = self.positions[self.edges[:, 0]] - self.positions[self.edges[:, 1]]
        squared: npt.NDArray[np.float64] = np.einsum("ij,ij->i", d, d)
        return np.sqrt(squared)

    def __len__(self) -> int:
        return self.n_nodes

    def __repr__(self) -> str:
        return f"Skeletons(n_nodes={self.n_nodes}, n_edges={self.n_edges}, n_skeletons={self.n_skeletons})"


def _node_id_array(values: object, n: int) -> npt.NDArray[np.int64 | np.uint64]:
    """(n,) node ids as int64, or uint64 when one is >= 2**63 and none negative: never wrapped."""
    if isinstance(values, list) and len(values) == n and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in values):
        values = [int(v) for v in values]  # Python ints (from a graph): checked before numpy can wrap them
        lo, hi = (min(values), max(values)) if values else (0, 0)
        if -2**63 <= lo and hi < 2**63:
            return np.array(values, dtype=np.int64)
        if 0 <= lo and hi < 2**64:
            return np.array(values, dtype=np.uint64)
        raise ValueError(f"node ids must fit in 64 bits (int64, or uint64 without negatives); "
                         f"got ids from {lo} to {hi}")
    nid = as_array("node_ids", values)
    if nid.shape != (n,) or nid.dtype == np.bool_ or nid.dtype.kind not in "iu":
        raise ValueError(f"node_ids must be ({n},) integers; got shape {nid.shape}, dtype {nid.dtype}")
    if nid.dtype.kind == "u" and nid.size and nid.max() >= 2**63:
        return np.array(nid, dtype=np.uint64)
    return np.array(nid, dtype=np.int64)


def _three_numbers(value: object) -> npt.NDArray[np.float64] | None:
    """``value`` as a (3,) float64 array, or None if it is not three real numbers.

    Anything may stand here in a graph read from a file, so any failure means "not three numbers";
    complex numbers and strings are refused rather than converted.
    """
    try:
        p = np.asarray(value)
        if p.shape != (3,) or p.dtype.kind not in "iuf":
            return None
        return p.astype(np.float64)
    except Exception:
        return None


def _brief(value: object, limit: int = 80) -> str:
    """A one-line repr for error messages, safe for objects from a damaged file (their repr may fail)."""
    try:
        text = " ".join(repr(value).split())
    except Exception:
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _unique_undirected(edges: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Drop repeated undirected edges, keeping the first occurrence and its order."""
    if edges.shape[0] < 2:
        return edges
    key = np.sort(edges, axis=1)
    _, first = np.unique(key, axis=0, return_index=True)
    if first.size == edges.shape[0]:
        return edges
    return edges[np.sort(first)]


def as_skeletons(skeletons: Skeletons | nx.Graph, name: str = "skeletons") -> Skeletons:
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
# _codecs.encode (a str-to-bytes conversion, no code). numpy's constructors are in
# _NUMPY_GLOBALS below: checked versions, not numpy's own.
_ALLOWED_GLOBALS = {
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

# numpy's pickles build a dtype as dtype('f8', False, True) then __setstate__((3, '<', ...)), an
# array as _reconstruct(ndarray, (0,), b'b') then __setstate__((version, shape, dtype, fortran,
# raw bytes)), a scalar as scalar(dtype, raw bytes), a protocol-5 array as _frombuffer(buffer,
# dtype, shape, order). numpy's own versions trust those arguments: a wrong field in a dtype's
# state crashes the process, a forged state can mark plain bytes as object pointers (which numpy
# then dereferences), and 60 bytes can ask for a billion-element object array (filled with None,
# so really allocated). A file therefore gets stand-ins: plain fixed-size dtypes built from their
# type string alone (of the state only the byte order is used), arrays and scalars with exactly
# as many bytes as their shape needs.
# the functions numpy's own pickles name, in numpy 1 and 2 alike
_numpy_scalar = cast("Callable[..., np.generic]", np.float64(0).__reduce__()[0])
_numpy_frombuffer = cast("Callable[..., npt.NDArray[Any]]", np.zeros(1).__reduce_ex__(5)[0])


class _PickledDtype:
    """What ``numpy.dtype(...)`` in a file makes; :func:`_plain_dtype` turns it into the dtype."""

    def __init__(self, spec: object, align: object = False, copy: object = False) -> None:
        dtype = np.dtype(spec) if isinstance(spec, str) else None
        if dtype is None or dtype.kind not in "biufcSU" or dtype.fields is not None or dtype.subdtype is not None:
            raise pickle.UnpicklingError(f"refusing numpy dtype {_brief(spec)} (only plain numbers and strings)")
        self.dtype = dtype

    def __setstate__(self, state: object) -> None:
        if not (isinstance(state, tuple) and len(state) >= 2 and state[1] in ("<", ">", "|", "=")):
            raise pickle.UnpicklingError("malformed numpy dtype state")
        if state[1] in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(state[1])


def _plain_dtype(dtype: object) -> np.dtype[Any]:
    if not isinstance(dtype, _PickledDtype):
        raise pickle.UnpicklingError(f"a numpy array or scalar with dtype {_brief(dtype)}")
    return dtype.dtype


def _raw_bytes(raw: object, nbytes: int, what: str) -> bytes:
    if isinstance(raw, str):  # Python 2 pickles carry the bytes as latin-1 text, as numpy accepts
        raw = raw.encode("latin-1")
    if not isinstance(raw, bytes) or len(raw) != nbytes:
        raise pickle.UnpicklingError(f"numpy {what} data does not match its declared size")
    return raw


class _NdarrayName:
    """What ``numpy.ndarray`` in a file unpickles to: good only as :func:`_reconstruct`'s argument
    (calling numpy.ndarray directly would allocate whatever shape the file names)."""

    def __new__(cls, *args: object, **kwargs: object) -> NoReturn:
        raise pickle.UnpicklingError("refusing to call numpy.ndarray from a pickle")


class _CheckedArray(np.ndarray):
    """The array :func:`_reconstruct` makes: its ``__setstate__`` checks what the file gives it."""

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("malformed numpy array state")
        shape, dtype, fortran, raw = state[-4:]
        dtype = _plain_dtype(dtype)
        if type(shape) is not tuple or min(shape, default=0) < 0:  # numpy refuses non-integers itself
            raise pickle.UnpicklingError("malformed numpy array shape")
        raw = _raw_bytes(raw, math.prod(shape) * dtype.itemsize, "array")
        super().__setstate__(state[:-4] + (shape, dtype, bool(fortran), raw))


def _reconstruct(subtype: object, shape: object, dtype: object) -> _CheckedArray:
    if subtype is not _NdarrayName or not (isinstance(shape, tuple) and shape == (0,)):
        raise pickle.UnpicklingError("refusing a numpy array that is not built as numpy pickles build them")
    arr: _CheckedArray = np.ndarray.__new__(_CheckedArray, (0,), np.int8)
    return arr


def _scalar(dtype: object, raw: object = None) -> np.generic:
    plain = _plain_dtype(dtype)
    return _numpy_scalar(plain, _raw_bytes(raw, plain.itemsize, "scalar"))


def _frombuffer(buf: object, dtype: object, shape: object, order: object, *axis_order: object) -> npt.NDArray[Any]:
    return _numpy_frombuffer(buf, _plain_dtype(dtype), shape, order, *axis_order)


_NUMPY_GLOBALS: dict[tuple[str, str], Callable[..., object]] = {
    ("numpy", "ndarray"): _NdarrayName, ("numpy", "dtype"): _PickledDtype}
for _module in ("numpy.core", "numpy._core"):
    _NUMPY_GLOBALS[(f"{_module}.multiarray", "_reconstruct")] = _reconstruct
    _NUMPY_GLOBALS[(f"{_module}.multiarray", "scalar")] = _scalar
    _NUMPY_GLOBALS[(f"{_module}.numeric", "_frombuffer")] = _frombuffer


class _SkeletonUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS:
            return _NUMPY_GLOBALS[(module, name)]
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if module in _NETWORKX_CLASS_MODULES and name.isidentifier():
            import importlib

            obj = getattr(importlib.import_module(module), name, None)
            if isinstance(obj, type) and obj.__module__ == module:
                return obj
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def load_skeletons(path: StrPath, *, position_attribute: str = "position") -> Skeletons:
    """Read skeletons from a challenge file, without executing code from it.

    Accepts the challenge's ``.npz`` files (a pickled ``networkx.Graph`` whose nodes carry
    ``position = (x, y, z)`` nm), read with a restricted unpickler, and the array form written by
    :func:`save_skeletons` with ``fmt="arrays"`` (a real ``.npz`` archive with ``positions_zyx``,
    ``edges`` and optional ``node_ids`` / ``ids``).

    Raises
    ------
    ValueError
        The file cannot be read, is corrupt or truncated, declares more data than it holds, or
        references anything beyond networkx/numpy/builtin containers (a hostile pickle) — nothing
        from it is executed. The message names the file and what is wrong.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ValueError(f"cannot read skeleton file {path!r}: {exc}") from None
    if data[:4] == b"PK\x03\x04":
        return _load_array_npz(path, data)
    # Unpickling makes a few objects per node and no garbage; the cyclic collector's passes over
    # them (the checked numpy arrays are tracked objects) would take as long as the load itself.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        obj = _SkeletonUnpickler(io.BytesIO(data)).load()
    except Exception as exc:  # any failure of an untrusted file is the file's fault
        raise ValueError(f"{path!r} is not a valid skeleton file: {_reason(exc)}") from None
    finally:
        if gc_was_enabled:
            gc.enable()
    import networkx as nx

    if not isinstance(obj, nx.Graph):
        raise ValueError(f"{path!r} holds a {type(obj).__name__}, not a networkx graph of skeletons")
    try:
        return Skeletons.from_networkx(obj, position_attribute=position_attribute)
    except (TypeError, ValueError) as exc:  # from_networkx's own account of what is wrong
        raise ValueError(f"{path!r}: {_reason(exc)}") from None
    except MemoryError:
        raise
    except Exception as exc:
        # An unpickled graph's internals are whatever the file says: networkx itself fails on a
        # graph whose adjacency is not a dict of dicts, whose cached views are broken, ...
        raise ValueError(f"{path!r} holds a malformed networkx graph: {_reason(exc, typed=True)}") from None


def _reason(exc: BaseException, typed: bool = False) -> str:
    """An exception's message on one line (numpy's can span several; a MemoryError has none)."""
    text = " ".join(str(exc).split())[:300]
    if typed or not text:
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text


def _load_array_npz(path: str, data: bytes) -> Skeletons:
    arrays = read_npz(data, name=repr(path), required=("positions_zyx", "edges"), optional=("node_ids", "ids"))
    try:
        return Skeletons(arrays["positions_zyx"], arrays["edges"], node_ids=arrays.get("node_ids"),
                         ids=arrays.get("ids"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path!r}: {exc}") from None


def save_skeletons(skeletons: Skeletons | nx.Graph, path: StrPath, *, fmt: Literal["networkx", "arrays"] = "networkx"
                   ) -> None:
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
                # Any: np.savez types its **arrays together with allow_pickle: bool
                arrays: dict[str, Any] = {"positions_zyx": skeletons.positions, "edges": skeletons.edges,
                          "node_ids": skeletons.node_ids}
                if skeletons.ids is not None:
                    arrays["ids"] = skeletons.ids
                np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
