"""The dataset interface shared by every source: labelled samples loaded on demand, splits, batches.

Images are ``[N, H, W, C]`` arrays, ``uint8`` in 0..255 or ``float32`` in
[0, 1]; labels are ``int64`` class indices. A :class:`Dataset` loads any subset
of its samples on request, so a folder of 25,000 JPEGs is decoded batch by
batch and never held in memory as a whole.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: image dtypes the loaders produce: ``"uint8"`` (0..255) or ``"float32"`` ([0, 1])
IMAGE_DTYPES = ("uint8", "float32")
#: the reference workload's image size ``(height, width)`` in pixels
SEED_IMAGE_SIZE = (180, 180)
#: default number of samples per mini-batch
BATCH_SIZE = 32


class DataError(ValueError):
    """Input data cannot be used: a missing folder, an impossible split, a wrong shape."""


class Dataset(ABC):
    """Labelled samples, loaded on demand by index.

    Args:
        labels: class index of every sample, shape ``[N]``.
    """

    def __init__(self, labels: np.ndarray | Sequence[int]) -> None:
        self.labels = np.array(labels, dtype=np.int64)
        self.labels.flags.writeable = False  # handed out as is: a caller's write would silently change the split

    def __len__(self) -> int:
        return len(self.labels)

    @abstractmethod
    def load(self, indices: np.ndarray) -> np.ndarray:
        """Samples at ``indices`` (int array ``[B]``), in that order: ``[B, ...]``."""

    def fingerprint(self) -> str | None:
        """A digest of everything that decides the samples and labels, for caches of data derived from them.

        Two datasets with the same fingerprint load the same samples bit for bit. None (the default)
        when nothing cheaper than the samples themselves identifies them (files on disk, arrays in memory).
        """
        return None

    def batches(self, rng: np.random.Generator, batch_size: int = BATCH_SIZE,
                shuffle: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One epoch of mini-batches ``(samples [B, ...], labels [B])``.

        Every sample appears exactly once; ``B = batch_size`` except for the last
        batch, which holds the remainder. The order is one permutation drawn from
        ``rng`` when this is called (not when iteration starts), so the same
        generator state gives the same epoch and each call reshuffles.

        Args:
            rng: the generator of the batch order (seed it for reproducible epochs).
            batch_size: samples per batch.
            shuffle: False keeps the dataset's order (and draws nothing from ``rng``).

        Raises:
            DataError: ``batch_size`` is not a positive integer.
        """
        check_count("batch_size", batch_size, minimum=1)
        order = rng.permutation(len(self)) if shuffle else np.arange(len(self))
        return self._batches(order, batch_size)

    def _batches(self, order: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            yield self.load(rows), self.labels[rows]

    def arrays(self, transform: Callable[[np.ndarray], np.ndarray] | None = None,
               chunk_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """All samples in order, loaded ``chunk_size`` at a time: ``(x [N, ...], labels [N])``.

        Args:
            transform: applied to every chunk of ``chunk_size`` samples (the last one: the rest)
                before it is kept, e.g. :meth:`Preprocessor.transform`, so only its (small) output is
                held in memory, never the whole set of images. (The chunks are exactly these:
                a matrix product over a chunk may round differently over another number of rows.)
            chunk_size: samples loaded at once.
        """
        check_count("chunk_size", chunk_size, minimum=1)
        transform = transform or (lambda x: x)
        rows = np.arange(len(self))
        # at least one (maybe empty) chunk, so that an empty split still has the transform's trailing shape
        starts = range(0, max(len(self), 1), chunk_size)
        return np.concatenate([transform(self.load(rows[k:k + chunk_size])) for k in starts]), self.labels.copy()

    def chunks(self, indices: np.ndarray, chunk_size: int) -> Iterator[np.ndarray]:
        """The samples at ``indices`` in order, as consecutive loads of at most ``chunk_size`` samples.

        For work that is the same sample by sample whatever the chunks (e.g. :meth:`Preprocessor.pool`);
        a dataset may choose smaller chunks and load ahead while the caller works on one (synthetic
        images render on threads).
        """
        for start in range(0, len(indices), chunk_size):
            yield self.load(indices[start:start + chunk_size])


class ArrayDataset(Dataset):
    """Samples held in memory.

    Args:
        x: samples ``[N, ...]``.
        labels: class indices ``[N]``.

    Raises:
        DataError: ``x`` and ``labels`` have different lengths.
    """

    def __init__(self, x: np.ndarray, labels: np.ndarray | Sequence[int]) -> None:
        super().__init__(labels)
        if len(x) != len(self.labels):
            raise DataError(f"x has {len(x)} samples but labels has {len(self.labels)}")
        self.x = x

    def load(self, indices: np.ndarray) -> np.ndarray:
        return self.x[indices]


@dataclass(frozen=True)
class Split:
    """A fixed train/validation split.

    Attributes:
        train: the training samples.
        val: the validation samples (disjoint from ``train``).
        class_names: name of each label value, e.g. ``("Cat", "Dog")`` for labels 0 and 1.
        skipped: ``(path, reason)`` of every source file examined, found unreadable and left out.
    """

    train: Dataset
    val: Dataset
    class_names: tuple[str, ...]
    skipped: tuple[tuple[Path, str], ...] = ()

    def arrays(self, transform: Callable[[np.ndarray], np.ndarray] | None = None,
               chunk_size: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(x_train, y_train, x_val, y_val)`` in memory; see :meth:`Dataset.arrays`."""
        return (*self.train.arrays(transform, chunk_size), *self.val.arrays(transform, chunk_size))


def stratified_split(labels: np.ndarray, n_train: int, n_val: int, seed: int, *,
                     class_names: Sequence[str] | None = None,
                     usable: Callable[[int], bool] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint train and validation indices with every class in proportion to its size.

    Each class's share of ``n_train + n_val`` (and then of ``n_train``) is its
    share of the data, rounded by largest remainder. Within a class, samples
    are taken in the order of one seeded permutation; samples that ``usable``
    rejects are passed over and the next ones taken instead, so the sizes are
    exact as long as enough usable samples exist.

    Args:
        labels: class index of every sample ``[N]`` (values ``0..K-1``).
        n_train: training split size, >= 1.
        n_val: validation split size, >= 0.
        seed: selects the split; the same seed gives the same indices.
        class_names: for error messages (default: the label values).
        usable: called on a candidate index; False skips it (e.g. a corrupt file).

    Returns:
        ``(train_indices, val_indices)``, each sorted, int64.

    Raises:
        DataError: a size is not an integer in range, the split needs more
            samples than exist, or a class runs out of usable samples.
    """
    check_count("n_train", n_train, minimum=1)
    check_count("n_val", n_val, minimum=0)
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=len(class_names or ()))
    names = list(class_names) if class_names is not None else [str(c) for c in range(len(counts))]
    if n_train + n_val > len(labels):
        found = ", ".join(f"{name} {count}" for name, count in zip(names, counts, strict=True))
        raise DataError(f"the split needs {n_train + n_val} samples (train {n_train} + val {n_val}) "
                        f"but there are only {len(labels)} ({found})")
    total = _allocate(n_train + n_val, counts)
    train_share = _allocate(n_train, total)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for cls, (need, n_cls_train) in enumerate(zip(total, train_share, strict=True)):
        members = rng.permutation(np.flatnonzero(labels == cls))
        chosen = members[:need] if usable is None else _take_usable(members, need, usable)
        if len(chosen) < need:
            raise DataError(f"class {names[cls]!r} has only {len(chosen)} usable samples of {len(members)}, "
                            f"the split needs {need} (train {n_cls_train} + val {need - n_cls_train})")
        train.append(chosen[:n_cls_train])
        val.append(chosen[n_cls_train:])
    return np.sort(np.concatenate(train)).astype(np.int64), np.sort(np.concatenate(val)).astype(np.int64)


def _take_usable(candidates: np.ndarray, need: int, usable: Callable[[int], bool]) -> np.ndarray:
    """The first ``need`` candidates that ``usable`` accepts (fewer if the candidates run out)."""
    chosen = []
    for index in candidates:
        if len(chosen) == need:
            break
        if usable(int(index)):
            chosen.append(index)
    return np.array(chosen, dtype=np.int64)


def _allocate(n: int, weights: np.ndarray) -> np.ndarray:
    """``n`` split into integers proportional to ``weights`` by largest remainder (ties to the lower index).

    Never exceeds a weight when ``n <= weights.sum()``: each share is at most
    ``ceil(n * w / total) <= w``.
    """
    exact = n * weights / weights.sum()
    shares = np.floor(exact).astype(np.int64)
    by_remainder = np.argsort(-(exact - shares), kind="stable")
    shares[by_remainder[:n - shares.sum()]] += 1
    return shares


def to_image_dtype(images: np.ndarray, dtype: str) -> np.ndarray:
    """``uint8`` images (0..255) or unit-range float images as ``dtype`` (``"uint8"`` or ``"float32"``)."""
    if dtype == "uint8":
        return images if images.dtype == np.uint8 else np.rint(images * 255.0).astype(np.uint8)
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255.0)
    return images.astype(np.float32)


def check_image_dtype(dtype: str) -> None:
    """Raise :class:`DataError` unless ``dtype`` is one of :data:`IMAGE_DTYPES`."""
    if dtype not in IMAGE_DTYPES:
        raise DataError(f"dtype must be one of {IMAGE_DTYPES}, got {dtype!r}")


def check_image_size(image_size: tuple[int, int]) -> tuple[int, int]:
    """``(height, width)`` in pixels as ints; :class:`DataError` unless both are positive integers."""
    if (not isinstance(image_size, tuple | list) or len(image_size) != 2
            or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0 for v in image_size)):
        raise DataError(f"image_size must be (height, width) in positive pixels, got {image_size!r}")
    return int(image_size[0]), int(image_size[1])


def check_count(name: str, value: object, minimum: int) -> None:
    """Raise :class:`DataError` unless ``value`` is an integer (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise DataError(f"{name} must be an integer >= {minimum}, got {value!r}")
