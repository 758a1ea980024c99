"""The Kaggle "Cats vs Dogs" folder layout (``root/Cat/*.jpg``, ``root/Dog/*.jpg``), decoded lazily.

The real PetImages set holds about 25,000 JPEGs, among them zero-byte files,
truncated JPEGs, files that are not images at all (``Thumbs.db`` is ignored
by extension; some ``.jpg`` files are PNG, GIF or BMP) and grayscale, CMYK,
palette or RGBA images. Everything Pillow can decode is converted to RGB and
resized; what it cannot decode is skipped and reported with its reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .base import (
    SEED_IMAGE_SIZE,
    DataError,
    Dataset,
    Split,
    check_image_dtype,
    check_image_size,
    stratified_split,
    to_image_dtype,
)

#: file name endings taken as images (compared case-insensitively)
IMAGE_SUFFIXES = (".jpg", ".jpeg")


def decode_image(path: Path, image_size: tuple[int, int]) -> np.ndarray:
    """One image file as RGB ``uint8 [height, width, 3]``, resized (bilinear, aspect not kept).

    Args:
        path: any format Pillow reads, whatever its name says.
        image_size: ``(height, width)`` in pixels.

    Raises:
        OSError: a file Pillow cannot read or decode (ValueError and Pillow's other errors on such files too).
    """
    height, width = image_size
    with Image.open(path) as image:
        # JPEG only (a no-op otherwise): libjpeg decodes at 1/2, 1/4 or 1/8 scale when that still covers
        # the target size; a 500x375 photo decodes at 250x188, which makes decode + resize a little cheaper
        image.draft("RGB", (width, height))
        rgb = image.convert("RGB")  # grayscale, CMYK, palette and RGBA (alpha dropped) all become RGB
    return np.asarray(rgb.resize((width, height), Image.Resampling.BILINEAR), dtype=np.uint8)


def _decode_or_reason(path: Path, image_size: tuple[int, int]) -> tuple[np.ndarray | None, str]:
    """``(image, "")`` as :func:`decode_image` returns it, or ``(None, why it cannot be decoded)``."""
    try:
        if path.stat().st_size == 0:
            return None, "empty file (0 bytes)"
        return decode_image(path, image_size), ""
    except Exception as error:  # a corrupt file can make Pillow raise almost anything
        return None, f"{type(error).__name__}: {error}"


class ImageFiles(Dataset):
    """Image files decoded when a batch asks for them.

    Args:
        paths: one file per sample.
        labels: class indices ``[N]``.
        image_size: ``(height, width)`` in pixels of every loaded image.
        dtype: ``"uint8"`` (0..255) or ``"float32"`` ([0, 1]).
    """

    def __init__(self, paths: Sequence[Path], labels: np.ndarray | Sequence[int],
                 image_size: tuple[int, int] = SEED_IMAGE_SIZE, dtype: str = "uint8") -> None:
        super().__init__(labels)
        check_image_dtype(dtype)
        self.paths = tuple(paths)
        if len(self.paths) != len(self.labels):
            raise DataError(f"{len(self.paths)} paths but {len(self.labels)} labels")
        self.image_size = check_image_size(image_size)
        self.dtype = dtype

    def load(self, indices: np.ndarray) -> np.ndarray:
        """Decoded images ``[B, height, width, 3]``.

        Raises:
            DataError: a file cannot be decoded (the split checked it, so it
                changed since), naming the file.
        """
        images = np.empty((len(indices), *self.image_size, 3), dtype=np.uint8)
        for row, index in enumerate(indices):
            image, reason = _decode_or_reason(self.paths[index], self.image_size)
            if image is None:
                raise DataError(f"cannot decode {self.paths[index]}: {reason}")
            images[row] = image
        return to_image_dtype(images, self.dtype)


def index_folder(root: str | Path, classes: Sequence[str] = ("Cat", "Dog")) -> tuple[list[Path], np.ndarray]:
    """Every image file under ``root/<class>/``, sorted by path, and its class index.

    Args:
        root: the folder holding one subfolder per class.
        classes: subfolder names; the label of ``classes[k]`` is ``k``.

    Returns:
        ``(paths, labels [N] int64)``. Files are not opened.

    Raises:
        DataError: ``root`` or a class folder is missing, or a class folder
            holds no ``.jpg``/``.jpeg`` file.
    """
    root = Path(root)
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise DataError(f"need at least two distinct class folder names, got {tuple(classes)!r}")
    if not root.is_dir():
        raise DataError(f"image folder not found: {root} (expected {root}/<class>/*.jpg)")
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            raise DataError(f"class folder not found: {folder} (expected one folder per class: {', '.join(classes)})")
        # sorted so that the index, and hence the split a seed selects, does not depend on listing order
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise DataError(f"class folder has no {'/'.join(IMAGE_SUFFIXES)} files: {folder}")
        paths += files
        labels += [label] * len(files)
    return paths, np.array(labels, dtype=np.int64)


def load_petimages(root: str | Path, n_train: int = 800, n_val: int = 200, seed: int = 0, *,
                   image_size: tuple[int, int] = SEED_IMAGE_SIZE, dtype: str = "uint8",
                   classes: Sequence[str] = ("Cat", "Dog")) -> Split:
    """A stratified train/validation split of a PetImages-style folder, decoded lazily.

    Candidates are drawn per class in the order of a seeded permutation, and
    each is decoded once to check it; unreadable files are skipped, recorded
    in :attr:`Split.skipped` and replaced by the next candidate, so the sizes
    are exact. Only the files the split needs are checked (a 1,000-image
    split of the 25,000-image set opens about 1,000 files).

    Args:
        root: folder with one subfolder of images per class.
        n_train: training split size; the seed workload uses 800.
        n_val: validation split size; the seed workload uses 200.
        seed: selects the split; the same seed and folder give the same split.
        image_size: ``(height, width)`` in pixels of every loaded image.
        dtype: ``"uint8"`` (0..255) or ``"float32"`` ([0, 1]).
        classes: subfolder names; ``classes[k]`` gets label ``k``.

    Returns:
        A :class:`Split` of :class:`ImageFiles` with images ``[height, width, 3]``.

    Raises:
        DataError: a folder is missing or empty, a size is impossible (too many
            samples overall, or too few readable files in a class), or a bad
            ``image_size``/``dtype``; the message names the path or class.

    Examples:
        >>> split = load_petimages("PetImages", 800, 200, seed=0)  # doctest: +SKIP
        >>> images, labels = next(split.train.batches(np.random.default_rng(0)))  # doctest: +SKIP
        >>> images.shape, labels.shape  # doctest: +SKIP
        ((32, 180, 180, 3), (32,))
        >>> for path, reason in split.skipped: print(path, reason)  # doctest: +SKIP
    """
    image_size = check_image_size(image_size)
    check_image_dtype(dtype)
    paths, labels = index_folder(root, classes)
    skipped: list[tuple[Path, str]] = []

    def usable(index: int) -> bool:  # a full decode, as loading does, so a file that passes loads later
        image, reason = _decode_or_reason(paths[index], image_size)
        if image is None:
            skipped.append((paths[index], reason))
        return image is not None

    try:
        train, val = stratified_split(labels, n_train, n_val, seed, class_names=classes, usable=usable)
    except DataError as error:
        note = f"; {len(skipped)} unreadable files skipped" if skipped else ""
        raise DataError(f"{root}: {error}{note}") from None

    def subset(rows: np.ndarray) -> ImageFiles:
        return ImageFiles([paths[k] for k in rows], labels[rows], image_size, dtype)

    return Split(subset(train), subset(val), tuple(classes), tuple(sorted(skipped)))
