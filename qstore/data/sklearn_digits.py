"""Real data that ships with a dependency: binary tasks on scikit-learn's 8x8 handwritten digits (extra ``digits``)."""

from __future__ import annotations

import numpy as np

from .._extras import MissingExtraError
from .base import ArrayDataset, DataError, Split, check_image_dtype, stratified_split, to_image_dtype

#: the digits' ink scale: pixel values are 0..16
_INK_LEVELS = 16.0


def digits(negative: int = 3, positive: int = 8, n_train: int | None = None, n_val: int | None = None,
           seed: int = 0, *, dtype: str = "uint8") -> Split:
    """Digit ``negative`` (label 0) against digit ``positive`` (label 1), stratified split.

    scikit-learn's copy of the UCI handwritten digits: 1,797 grayscale 8x8
    images, about 180 per digit (3 vs 8: 183 + 174 = 357).

    Args:
        negative: the digit of label 0 (0..9).
        positive: the digit of label 1 (0..9, not ``negative``).
        n_train: training split size; by default the images not in validation.
        n_val: validation split size; by default 20 % of the images (rounded
            down), or, given ``n_train``, the rest.
        seed: selects the split.
        dtype: ``"uint8"`` (0..255) or ``"float32"`` ([0, 1]); the source's
            ink levels 0..16 are scaled to that range.

    Returns:
        A :class:`Split` of :class:`ArrayDataset` with images ``[8, 8, 1]``,
        class names ``(str(negative), str(positive))``.

    Raises:
        DataError: a digit out of range, the same digit twice, or impossible sizes.

    Examples:
        >>> split = digits(3, 8)
        >>> len(split.train), len(split.val), split.train.x.shape[1:], split.class_names
        (286, 71, (8, 8, 1), ('3', '8'))
    """
    check_image_dtype(dtype)
    pair = (negative, positive)
    if negative == positive or not all(isinstance(d, int) and 0 <= d <= 9 for d in pair):
        raise DataError(f"need two distinct digits in 0..9, got {pair!r}")
    try:  # here, not at the top: importing scikit-learn takes most of a second
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise MissingExtraError("digits", "the digits dataset", error) from error

    source = load_digits()
    keep = np.isin(source.target, pair)
    images = (source.images[keep] / _INK_LEVELS)[..., np.newaxis]
    labels = (source.target[keep] == positive).astype(np.int64)
    if n_val is None:
        n_val = len(labels) // 5 if n_train is None else max(len(labels) - n_train, 0)
    if n_train is None:
        n_train = len(labels) - n_val
    names = (str(negative), str(positive))
    train, val = stratified_split(labels, n_train, n_val, seed, class_names=names)
    x = to_image_dtype(images, dtype)
    return Split(ArrayDataset(x[train], labels[train]), ArrayDataset(x[val], labels[val]), names)
