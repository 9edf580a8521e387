"""Reading ``.npz`` archives that may be damaged or hostile.

``np.load`` believes what each member's ``.npy`` header declares: a 1 KB file whose header says
shape ``(10**12, 3)`` makes it allocate 24 TB before it finds the data missing, and damage deep in
the zip surfaces as whatever ``zipfile`` or ``zlib`` happen to raise (``NotImplementedError``,
``RuntimeError``, ``zlib.error``, ...). :func:`read_npz` checks every member's declared size against
the bytes the archive really holds *before* allocating, never unpickles, and reports every kind of
damage as one ``ValueError`` that names the file and what is wrong.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import zipfile
from typing import IO, Any, Iterable, Iterator

import numpy as np
import numpy.typing as npt
from numpy.lib import format as npy_format

from ._typing import StrPath

__all__ = ["read_npz"]

# Deflate expands at most 1032:1 (a 258-byte match per 2 bits), so a member that claims to
# decompress to more than this is lying about its size; the slack covers tiny streams.
_MAX_DEFLATE_RATIO = 1032
_DEFLATE_SLACK = 1024
# What np.savez / np.savez_compressed write; bzip2 and lzma can expand far more than deflate.
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
_HEADER_READERS = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}
_CHUNK = 1 << 24  # read member data in 16 MiB pieces, straight into the result


class _Damaged(ValueError):
    """A problem this module has already described; passed through :func:`_describe` unchanged."""


@contextlib.contextmanager
def _describe(name: str, where: str) -> Iterator[None]:
    """Turn whatever zipfile / zlib / numpy raise on damaged bytes into one ValueError.

    They raise many types on bad input (BadZipFile, zlib.error, EOFError, NotImplementedError for
    odd flag bits, RuntimeError for encryption, ValueError, OSError, struct.error, ...), none of
    which say which file was bad. MemoryError is passed on: the size checks make it the machine's
    problem, not the file's.
    """
    try:
        yield
    except (_Damaged, MemoryError):
        raise
    except Exception as exc:
        text = " ".join(str(exc).split())[:300]  # one line: some numpy messages hold newlines
        raise _Damaged(f"{name}: {where}: {type(exc).__name__}: {text}" if text else
                       f"{name}: {where}: {type(exc).__name__}") from None


def read_npz(source: StrPath | bytes | bytearray | memoryview, *, name: str | None = None,
             required: Iterable[str] = (), optional: Iterable[str] = ()) -> dict[str, npt.NDArray[Any]]:
    """Read the arrays of an ``.npz`` archive (as ``np.savez`` writes) without trusting it.

    Parameters
    ----------
    source : path-like or bytes
        The archive, as a path or as its bytes.
    name : str, optional
        How errors name the file (default: ``repr`` of the path, or ``"npz data"`` for bytes).
    required : iterable of str
        Array names (without ``.npy``) that must be present.
    optional : iterable of str
        Array names that are read when present. When ``required`` or ``optional`` names anything,
        only those arrays are read and returned (other members are skipped unread); when both are
        empty, every member is read.

    Returns
    -------
    dict of str to numpy.ndarray
        Writable arrays, keyed by member name without ``.npy``, in archive order.

    Raises
    ------
    ValueError
        Naming the file and the problem: not a zip archive, a member that is not a ``.npy`` array,
        the same array twice, a required array missing, an unsupported compression method, a bad
        ``.npy`` header, Python objects (``dtype=object``: loading them would unpickle), a declared
        shape whose size differs from the data the member holds, truncated or corrupt (CRC) data.
    OSError
        Only from opening or reading ``source`` when it is a path.
    """
    wanted = list(required) + [k for k in optional if k not in set(required)]
    if isinstance(source, (bytes, bytearray, memoryview)):
        name = name or "npz data"
        return _read(io.BytesIO(bytes(source)), len(source), name, set(required), wanted)
    path = os.fspath(source)
    name = name or repr(path)
    with open(path, "rb") as f:
        return _read(f, os.fstat(f.fileno()).st_size, name, set(required), wanted)


def _read(fileobj: IO[bytes], archive_size: int, name: str, required: set[str], wanted: list[str]
          ) -> dict[str, npt.NDArray[Any]]:
    with _describe(name, "not a valid zip archive"):
        zf = zipfile.ZipFile(fileobj)
    with zf:
        members = {}
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                raise _Damaged(f"{name}: member {info.filename!r} is not a .npy array")
            key = info.filename[:-4]
            if key in members:
                raise _Damaged(f"{name}: holds array {key!r} twice")
            members[key] = info
        missing = sorted(required - set(members))
        if missing:
            raise _Damaged(f"{name} lacks arrays {missing} (has {sorted(members)})")
        keys = [k for k in wanted if k in members] if wanted else list(members)
        return {key: _read_member(zf, members[key], archive_size, name) for key in keys}


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, archive_size: int, name: str) -> npt.NDArray[Any]:
    where = f"member {info.filename!r}"
    if info.compress_type not in _METHODS:
        raise _Damaged(f"{name}: {where} uses zip compression method {info.compress_type} "
                       f"(only stored and deflated are read)")
    # the sizes the zip directory claims bound every allocation below, so check them against the
    # bytes really there: stored data is as long as it is, deflated data expands boundedly
    if info.compress_size > archive_size or (
            info.file_size > info.compress_size if info.compress_type == zipfile.ZIP_STORED
            else info.file_size > _MAX_DEFLATE_RATIO * info.compress_size + _DEFLATE_SLACK):
        raise _Damaged(f"{name}: {where} claims {info.file_size} bytes ({_METHODS[info.compress_type]}) "
                       f"from {info.compress_size} bytes in a {archive_size}-byte file")
    with _describe(name, where), zf.open(info) as f:
        version = npy_format.read_magic(f)
        if version not in _HEADER_READERS:
            raise _Damaged(f"{name}: {where} has unsupported .npy format version {version[0]}.{version[1]}")
        shape, fortran, dtype = _HEADER_READERS[version](f)
        data_size = info.file_size - f.tell()
        if dtype.hasobject:
            raise _Damaged(f"{name}: {where} holds Python objects (dtype {dtype}); refusing to unpickle them")
        if dtype.shape != () or (dtype.itemsize == 0 and math.prod(shape) != 0):
            raise _Damaged(f"{name}: {where} has dtype {dtype}, which np.save never writes")
        if any(d < 0 for d in shape):
            raise _Damaged(f"{name}: {where} declares shape {shape}")
        nbytes = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
        if nbytes != data_size:
            raise _Damaged(f"{name}: {where} declares shape {shape} of {dtype} ({nbytes} bytes) "
                           f"but holds {data_size} bytes of data")
        # only now allocate: the result itself, filled piece by piece (zipfile checks the CRC at the end)
        out = np.empty(math.prod(shape), dtype=dtype)
        raw = out.view(np.uint8) if nbytes else out
        for start in range(0, nbytes, _CHUNK):
            piece = f.read(min(_CHUNK, nbytes - start))  # short only at the end of the data
            raw[start:start + len(piece)] = np.frombuffer(piece, dtype=np.uint8)
            if len(piece) < min(_CHUNK, nbytes - start):
                raise _Damaged(f"{name}: {where} is truncated: {start + len(piece)} of {nbytes} bytes of data")
        if f.read(1):
            raise _Damaged(f"{name}: {where} holds more data than its header declares")
    return out.reshape(shape, order="F" if fortran else "C")
