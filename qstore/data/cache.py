"""An on-disk cache of prepared data: the model's inputs, stored once per everything that determines them.

Preparing the seed workload's data (rendering 1,000 synthetic 180x180 images,
pooling them, fitting the PCA) costs seconds; its result is a few hundred
kilobytes and a pure function of its inputs, so :func:`qstore.data.prepare_data`
keeps it here and later runs read it back, bit for bit the same arrays.

**The key** is the SHA-256 of a JSON document holding every input of the
preparation: both splits' :meth:`~qstore.data.Dataset.fingerprint` (for
synthetic images, every per-sample number they are rendered from), the block
size and feature count, the SHA-256 of every source file of ``qstore.data``
(any code change misses), the versions of Python, NumPy, numba and llvmlite,
the CPU's LLVM name (the compiled passes are built for it and OpenBLAS picks
its kernels by it) and the BLAS thread settings (the PCA's SVD rounds
differently with another thread count). A dataset without a fingerprint
(image files on disk, arrays in memory) is never cached.

**The folder** is ``$QSTORE_CACHE_DIR/data``, by default
``$XDG_CACHE_HOME/qstore/data`` (``~/.cache/qstore/data``); one file per key,
``<key>.qdata``. Nothing is evicted: deleting the folder is always safe.

**A file** is :data:`MAGIC`, the SHA-256 of the rest, then an uncompressed
``.npz`` payload that also holds the key document. It is written to a unique
temporary file in the same folder, fsynced and renamed onto its name
(:func:`os.replace`, atomic), so a reader sees a whole file or none, and
writers of the same key at once (they write the same bytes) leave one whole
file. A file that is short, has another magic or digest, does not parse, holds
another key or arrays of the wrong shapes is reported with a
:class:`CacheWarning`, treated as a miss and overwritten by the fresh result;
a folder that cannot be written costs a warning, never the run. A writer
killed mid-write leaves only its hidden ``.<key>.qdata.<random>.tmp`` file,
which nothing reads.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import platform
import sys
import uuid
import warnings
from pathlib import Path
from typing import Any

import llvmlite
import llvmlite.binding
import numba
import numpy as np

from qsim_core.threads import usable_cores

__all__ = ["CACHE_ENV", "MAGIC", "CacheWarning", "Prepared", "PreparedCache", "default_cache_dir"]

#: environment variable naming the cache folder (the data cache is its ``data/`` subfolder)
CACHE_ENV = "QSTORE_CACHE_DIR"
#: the first bytes of every cache file; the trailing digit is the format version
MAGIC = b"qstore-prepared-data 1\n"
#: environment variables that set the BLAS libraries' thread counts
_BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_SUFFIX = ".qdata"
_KEY_NAME = "__key__"
_DIGEST_BYTES = hashlib.sha256().digest_size


class CacheWarning(UserWarning):
    """A cache file could not be used or written; the data was prepared afresh."""


#: the prepared data: ``((x_train [N, F], y_train [N], x_val [M, F], y_val [M]), extras)``, see
#: :func:`qstore.data.prepare_data`
Prepared = tuple[tuple[np.ndarray, ...], dict[str, dict[str, np.ndarray]]]
_ARRAY_NAMES = ("x_train", "y_train", "x_val", "y_val")


def default_cache_dir() -> Path:
    """``$QSTORE_CACHE_DIR``, else ``$XDG_CACHE_HOME/qstore``, else ``~/.cache/qstore``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "qstore"


class PreparedCache:
    """Prepared data on disk, one file per key (see the module docstring for the key, the format and the rules).

    Args:
        root: the cache folder (entries go to ``root/data``); None: :func:`default_cache_dir`.

    Attributes:
        folder: where the entries are.
        hits, misses: :meth:`load` calls that found a usable entry, and those that did not.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.folder = Path(default_cache_dir() if root is None else root) / "data"
        self.hits = 0
        self.misses = 0

    def path(self, inputs: dict[str, Any]) -> Path:
        """The file of the entry of ``inputs`` (JSON-serialisable: the data's fingerprints and the settings)."""
        return self._entry(inputs)[1]

    def load(self, inputs: dict[str, Any]) -> Prepared | None:
        """The stored preparation of ``inputs``, or None (absent, or unusable: a :class:`CacheWarning` says why)."""
        document, path = self._entry(inputs)
        prepared = None
        try:
            prepared = _decode(path.read_bytes(), document)
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as error:
            warnings.warn(f"data cache file {path} is unusable ({error}); preparing the data afresh",
                          CacheWarning, stacklevel=2)
        self.hits += prepared is not None
        self.misses += prepared is None
        return prepared

    def store(self, inputs: dict[str, Any], prepared: Prepared) -> Path | None:
        """Write ``prepared`` as the entry of ``inputs``, atomically; its path, or None when a warning said why not."""
        document, path = self._entry(inputs)
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(temporary, "xb") as file:
                file.write(_encode(prepared, document))
                file.flush()
                os.fsync(file.fileno())  # on disk before the rename makes it the entry
            os.replace(temporary, path)
        except OSError as error:
            _remove(temporary)
            warnings.warn(f"data cache file {path} cannot be written ({error}); the data is prepared but not kept",
                          CacheWarning, stacklevel=2)
            return None
        except BaseException:
            _remove(temporary)
            raise
        return path

    def _entry(self, inputs: dict[str, Any]) -> tuple[str, Path]:
        """The key document of ``inputs`` (JSON text) and its file, named by the document's SHA-256."""
        document = json.dumps({"inputs": inputs, "environment": _environment()}, sort_keys=True)
        return document, self.folder / f"{hashlib.sha256(document.encode()).hexdigest()}{_SUFFIX}"


def _remove(temporary: Path) -> None:
    """Delete a temporary file if it exists (an unwritable folder may not even let us look)."""
    with contextlib.suppress(OSError):
        temporary.unlink(missing_ok=True)


def _encode(prepared: Prepared, document: str) -> bytes:
    arrays, extras = prepared
    named = dict(zip(_ARRAY_NAMES, arrays, strict=True)) | {
        f"{group}/{name}": value for group, values in extras.items() for name, value in values.items()}
    buffer = io.BytesIO()
    np.savez(buffer, **{_KEY_NAME: np.array(document)}, **named)
    payload = buffer.getvalue()
    return MAGIC + hashlib.sha256(payload).digest() + payload


def _decode(blob: bytes, document: str) -> Prepared:
    """The entry in ``blob`` if it holds ``document``'s data; ValueError naming what is wrong with it."""
    header = len(MAGIC) + _DIGEST_BYTES
    if len(blob) < header or not blob.startswith(MAGIC):
        raise ValueError("not a qstore data cache file of this version")
    payload = blob[header:]
    if hashlib.sha256(payload).digest() != blob[len(MAGIC):header]:
        raise ValueError("checksum mismatch: truncated or damaged")
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
            named = {name: archive[name] for name in archive.files}
    except Exception as error:  # numpy and zipfile raise many kinds on a malformed archive
        raise ValueError(f"unreadable payload: {error}") from None
    if str(named.pop(_KEY_NAME, "")) != document:
        raise ValueError("it holds another key's data")
    missing = [name for name in _ARRAY_NAMES if name not in named]
    if missing:
        raise ValueError(f"arrays {missing} missing")
    arrays = tuple(named.pop(name) for name in _ARRAY_NAMES)
    _check_shapes(arrays)
    extras: dict[str, dict[str, np.ndarray]] = {}
    for name, value in named.items():
        group, _, entry = name.partition("/")
        extras.setdefault(group, {})[entry] = value
    return arrays, extras


def _check_shapes(arrays: tuple[np.ndarray, ...]) -> None:
    x_train, y_train, x_val, y_val = arrays
    if (x_train.ndim != 2 or x_val.ndim != 2 or x_train.shape[1] != x_val.shape[1]
            or y_train.shape != x_train.shape[:1] or y_val.shape != x_val.shape[:1]):
        raise ValueError(f"arrays of shapes {[a.shape for a in arrays]} do not fit together")


def _environment() -> dict[str, Any]:
    """What, besides the inputs, decides the prepared arrays' bits: the code, its libraries, the CPU, BLAS threads."""
    return {"code": _source_digest(), "python": sys.version, "numpy": np.__version__, "numba": numba.__version__,
            "llvmlite": llvmlite.__version__, "machine": platform.machine(),
            "cpu": _cpu_name(), "cores": usable_cores(),
            "blas_threads": {name: os.environ.get(name) for name in _BLAS_THREAD_VARIABLES}}


@functools.cache
def _cpu_name() -> str:
    return llvmlite.binding.get_host_cpu_name()


@functools.cache
def _source_digest() -> str:
    """SHA-256 of every source file of ``qstore.data`` (by name and content)."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
