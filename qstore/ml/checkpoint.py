"""HDF5 checkpoints: weights, optimizer state, RNG state, epoch, metrics history and metadata, written atomically.

A checkpoint is written to a temporary file in the target's directory,
flushed and fsynced, then renamed onto the target with :func:`os.replace`
(atomic on POSIX and Windows) and the directory fsynced, so a crash at any
moment leaves either the previous checkpoint or the new one, never a
truncated file.

Layout of the file (readable with any HDF5 tool)::

    /                 attrs: format="qstore-checkpoint", version=1, epoch,
                             rng_state (JSON), metadata (JSON)
    /weights/...      one dataset per array, one group per nested dict,
    /optimizer/...    Python scalars (int, float, bool) as attributes of their group
    /extras/...
    /metrics          one row per epoch, one named column per metric (compound dataset)

Names are the dict keys, with ``%`` and ``/`` percent-encoded (``"m/0.W"`` is
stored as ``m%2F0.W``) so flat keys that contain a slash round-trip as flat keys.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import h5py
import numpy as np

#: a tree of named arrays: values are arrays, Python scalars or nested trees
ArrayTree: TypeAlias = Mapping[str, "np.ndarray | int | float | bool | ArrayTree"]

FORMAT = "qstore-checkpoint"
VERSION = 1
#: the numpy bit generators a saved RNG state may name
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
_TREES = ("weights", "optimizer", "extras")


class CheckpointError(ValueError):
    """A checkpoint cannot be written or read: unsupported contents, or a corrupt or foreign file."""


@dataclass
class Checkpoint:
    """Everything a checkpoint holds.

    Attributes:
        weights: model parameters by name (nested dicts allowed), e.g. ``{"0.W": [F, n] array}``.
        optimizer: optimizer state: arrays and scalars such as the step count.
        rng_state: a numpy ``Generator.bit_generator.state`` (None if not saved); see :meth:`generator`.
        epoch: epochs completed.
        metrics: one row per epoch of named numbers (``train_loss``, ``val_acc``, ``lr``, ...).
        metadata: free-form JSON data, e.g. the run's configuration (tuples come back as lists).
        extras: other fitted state as arrays, e.g. ``{"preprocessor": Preprocessor.state()}``.
    """

    weights: dict[str, Any]
    optimizer: dict[str, Any] = field(default_factory=dict)
    rng_state: dict[str, Any] | None = None
    epoch: int = 0
    metrics: list[dict[str, int | float]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    def generator(self) -> np.random.Generator:
        """A new generator positioned exactly where the saved one was (it draws the same stream).

        Raises:
            CheckpointError: no RNG state was saved, or it names an unknown bit generator.
        """
        if self.rng_state is None:
            raise CheckpointError("this checkpoint holds no RNG state")
        name = self.rng_state.get("bit_generator")
        if name not in _BIT_GENERATORS:
            raise CheckpointError(f"unknown bit generator {name!r} in the RNG state (known: {_BIT_GENERATORS})")
        bit_generator = getattr(np.random, name)()
        bit_generator.state = self.rng_state
        return np.random.Generator(bit_generator)


def save_checkpoint(path: str | os.PathLike[str], *, weights: ArrayTree, optimizer: ArrayTree | None = None,
                    rng_state: Mapping[str, Any] | None = None, epoch: int = 0,
                    metrics: Sequence[Mapping[str, int | float]] = (), metadata: Mapping[str, Any] | None = None,
                    extras: ArrayTree | None = None) -> Path:
    """Write a checkpoint atomically: the file at ``path`` is the old one or the new one, never a mix.

    Arrays are stored bit-exact with their dtype and shape (numeric and bool
    dtypes); Python ``int``/``float``/``bool`` values come back as the same
    Python types; numpy scalars come back as 0-d arrays.

    Args:
        path: the checkpoint file (its directory must exist); replaced if present.
        weights: named arrays, nested dicts allowed.
        optimizer: named arrays and scalars (e.g. Adam's moments and step count).
        rng_state: ``generator.bit_generator.state`` of the run's generator.
        epoch: epochs completed.
        metrics: per-epoch rows; every row has the same keys, values are real numbers.
        metadata: JSON-serialisable data (e.g. the config as a dict).
        extras: more named arrays, e.g. a fitted preprocessor's state.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        CheckpointError: an unsupported value (object or string array, a
            non-JSON metadata value, a bad name, rows with different keys),
            naming where it is. Nothing is written then.
        OSError: the directory is missing or not writable.

    Examples:
        >>> import tempfile
        >>> folder = tempfile.TemporaryDirectory()
        >>> rng = np.random.default_rng(0)
        >>> target = Path(folder.name) / "run.h5"
        >>> _ = save_checkpoint(target, weights={"W": np.eye(2)}, optimizer={"step": 3},
        ...                     rng_state=rng.bit_generator.state, epoch=1,
        ...                     metrics=[{"train_loss": 0.69, "val_acc": 0.5}])
        >>> ckpt = load_checkpoint(target)
        >>> ckpt.epoch, ckpt.optimizer, ckpt.generator().random() == rng.random()
        (1, {'step': 3}, True)
        >>> folder.cleanup()
    """
    path = Path(path)
    if isinstance(epoch, bool) or not isinstance(epoch, int | np.integer) or epoch < 0:
        raise CheckpointError(f"epoch must be a non-negative integer, got {epoch!r}")
    trees = {"weights": weights, "optimizer": optimizer or {}, "extras": extras or {}}
    for name, tree in trees.items():
        _check_tree(tree, name)
    table = _metrics_table(metrics)
    attrs = {"format": FORMAT, "version": VERSION, "epoch": int(epoch),
             "rng_state": _to_json(None if rng_state is None else dict(rng_state), "rng_state"),
             "metadata": _to_json(dict(metadata or {}), "metadata")}
    # a unique name in the same directory: os.replace is atomic only within one file system
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with h5py.File(temporary, "x") as file:
            file.attrs.update(attrs)
            for name, tree in trees.items():
                _write_tree(file.create_group(name), tree)
            if table is not None:
                file.create_dataset("metrics", data=table)
        _fsync(temporary)  # the data must be on disk before the rename makes it the checkpoint
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if os.name == "posix":  # make the rename itself durable (Windows cannot open a directory)
        _fsync(path.parent)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is not HDF5, is truncated or corrupt, or is
            not a qstore checkpoint of a known version; the message names the path.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with h5py.File(path, "r") as file:
            if file.attrs.get("format") != FORMAT:
                raise CheckpointError(f"{path} is an HDF5 file but not a qstore checkpoint (no format={FORMAT!r})")
            version = int(file.attrs["version"])
            if version != VERSION:
                raise CheckpointError(f"{path} is checkpoint format version {version}; this qstore reads {VERSION}")
            return Checkpoint(
                **{name: _read_tree(file[name]) for name in _TREES},
                rng_state=json.loads(file.attrs["rng_state"], object_hook=_decode_array),
                epoch=int(file.attrs["epoch"]),
                metrics=_metrics_rows(file["metrics"][()]) if "metrics" in file else [],
                metadata=json.loads(file.attrs["metadata"]),
            )
    except CheckpointError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as error:  # h5py's errors on damaged or incomplete files
        raise CheckpointError(f"cannot read checkpoint {path}: {type(error).__name__}: {error}") from error


def _check_tree(tree: ArrayTree, where: str) -> None:
    """Raise :class:`CheckpointError` at the first value the file format cannot hold exactly."""
    if not isinstance(tree, Mapping):
        raise CheckpointError(f"{where} must be a dict of arrays, got {type(tree).__name__}")
    for key, value in tree.items():
        at = f"{where}[{key!r}]"
        if not isinstance(key, str) or not key:
            raise CheckpointError(f"{at}: names must be non-empty strings")
        if isinstance(value, Mapping):
            _check_tree(value, at)
        elif isinstance(value, np.ndarray | np.generic):
            if value.dtype.kind not in "biufc":
                raise CheckpointError(f"{at}: arrays must be numeric or bool, got dtype {value.dtype}")
        elif not isinstance(value, bool | int | float):
            raise CheckpointError(f"{at}: expected an array, a number or a dict, got {type(value).__name__}")
        elif isinstance(value, int) and not -2**63 <= value < 2**63:
            raise CheckpointError(f"{at}: the integer {value} does not fit in 64 bits")


def _write_tree(group: h5py.Group, tree: ArrayTree) -> None:
    for key, value in tree.items():
        name = _encode_name(key)
        if isinstance(value, Mapping):
            _write_tree(group.create_group(name), value)
        elif isinstance(value, np.ndarray | np.generic):
            group.create_dataset(name, data=np.asarray(value))
        else:
            group.attrs[name] = value


def _read_tree(group: h5py.Group) -> dict[str, Any]:
    tree: dict[str, Any] = {_decode_name(name): value.item() for name, value in group.attrs.items()}
    for name, item in group.items():
        tree[_decode_name(name)] = _read_tree(item) if isinstance(item, h5py.Group) else item[...]
    return tree


def _encode_name(key: str) -> str:
    """An HDF5 link name for ``key``: ``%`` and ``/`` percent-encoded, ``"."`` (a reserved name) as ``%2E``."""
    name = key.replace("%", "%25").replace("/", "%2F")
    return "%2E" if name == "." else name


def _decode_name(name: str) -> str:
    return re.sub("%(25|2E|2F)", lambda match: chr(int(match[1], 16)), name)


def _metrics_table(rows: Sequence[Mapping[str, int | float]]) -> np.ndarray | None:
    """Rows as one structured array (int64 columns where every value is an int, else float64)."""
    if not rows:
        return None
    columns = list(rows[0])
    for epoch, row in enumerate(rows):
        if list(row) != columns:
            raise CheckpointError(f"metrics row {epoch} has keys {list(row)}, row 0 has {columns}: "
                                  f"every row needs the same keys in the same order")
        for key, value in row.items():
            if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
                raise CheckpointError(f"metrics row {epoch}[{key!r}]: expected a number, got {value!r}")
    if not columns:
        raise CheckpointError("metrics rows have no keys")
    dtype = [(key, np.int64 if all(isinstance(row[key], int | np.integer) for row in rows) else np.float64)
             for key in columns]
    return np.array([tuple(row.values()) for row in rows], dtype=dtype)


def _metrics_rows(table: np.ndarray) -> list[dict[str, int | float]]:
    return [{key: row[key].item() for key in table.dtype.names} for row in table]


def _to_json(value: Any, where: str) -> str:
    """JSON text of ``value``; numpy arrays (as in some bit generators' states) are tagged and kept exact."""
    def encode(item: Any) -> Any:
        if isinstance(item, np.ndarray):
            return {"__ndarray__": item.tolist(), "dtype": item.dtype.str}
        if isinstance(item, np.generic):
            return item.item()
        raise TypeError(f"{type(item).__name__} is not JSON serialisable")

    try:
        return json.dumps(value, default=encode, allow_nan=True)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{where} cannot be saved as JSON: {error}") from error


def _decode_array(obj: dict[str, Any]) -> Any:
    return np.array(obj["__ndarray__"], dtype=obj["dtype"]) if "__ndarray__" in obj else obj


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
