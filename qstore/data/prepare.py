"""From a dataset name to the model's inputs: the data settings, loading the split, preprocessing.

``qstore train``, ``qstore reproduce`` and ``qstore sweep`` all prepare their data here, so the
same settings give the same arrays whichever command trains on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..settings import integer, setting, text, validate
from .base import DataError, Split
from .cache import Prepared, PreparedCache
from .petimages import load_petimages
from .preprocess import Preprocessor
from .sklearn_digits import digits
from .synthetic_images import synthetic

#: 180 x 180 images are averaged over 10 x 10 blocks before the PCA (18 x 18 x 3 values)
IMAGE_BLOCK = 10


@dataclass(frozen=True)
class DataConfig:
    """Which data a run trains on, and how much of it (each field a setting, see :mod:`qstore.settings`).

    Attributes:
        dataset: ``"synthetic"`` (seed-shaped images), ``"petimages:PATH"`` (a folder with ``Cat/``
            and ``Dog/``) or ``"digits:A,B"`` (scikit-learn's digits A against B; extra ``digits``).
        n_train, n_val: split sizes; None: 800/200 for images, 80/20 % for digits.
        features: the preprocessor's output width (PCA components per image).
        seed: selects the split (and the synthetic images).
    """

    dataset: str = setting("synthetic", "dataset", "synthetic, petimages:PATH or digits:A,B", text, str)
    n_train: int | None = setting(None, "n_train", "training samples (none: 800; digits: 80 %)",
                                  integer(1, optional=True), int)
    n_val: int | None = setting(None, "n_val", "validation samples (none: 200; digits: 20 %)",
                                integer(1, optional=True), int)
    features: int = setting(16, "features", "PCA features per image", integer(1), int)
    seed: int = setting(0, "seed", "selects the split", integer(0), int)

    def __post_init__(self) -> None:
        validate(self)


def load_dataset(config: DataConfig) -> tuple[Split, int]:
    """The split ``config`` names, and the preprocessing block size suited to its images.

    Raises:
        DataError: an unknown or malformed dataset name, or data that cannot be loaded.
    """
    kind, _, argument = config.dataset.partition(":")
    if kind == "synthetic":
        # rendered as float32 and pooled as is: quantising to uint8 first would only cost time
        return synthetic(config.n_train or 800, config.n_val or 200, config.seed, dtype="float32"), IMAGE_BLOCK
    if kind == "petimages":
        if not argument:
            raise DataError("dataset petimages:PATH needs the folder holding Cat/ and Dog/")
        return load_petimages(argument, config.n_train or 800, config.n_val or 200, config.seed), IMAGE_BLOCK
    if kind == "digits":
        try:
            negative, positive = (int(v) for v in (argument or "3,8").split(","))
        except ValueError:
            raise DataError(f"dataset digits:A,B needs two digits, got {config.dataset!r}") from None
        return digits(negative, positive, config.n_train, config.n_val, config.seed), 1
    raise DataError(f"unknown dataset {config.dataset!r}; use synthetic, petimages:PATH or digits:A,B")


def prepare_data(split: Split, block: int, features: int, cache: PreparedCache | None = None) -> Prepared:
    """The model's inputs from a split.

    Args:
        split: from :func:`load_dataset`.
        block: the preprocessing block size :func:`load_dataset` gives with it.
        features: the preprocessor's output width.
        cache: keep the result on disk and reuse it (:mod:`qstore.data.cache`), for splits whose
            datasets have a :meth:`~qstore.data.Dataset.fingerprint` (synthetic images); the
            arrays read back are bit for bit those prepared afresh. None: always prepare afresh.

    Returns:
        ``((x_train [N, F], y_train [N], x_val [M, F], y_val [M]), extras)``: standardized features
        and float labels, and the fitted preprocessing (``preprocessor`` and ``standardize`` states).

    Raises:
        DataError: the split cannot be preprocessed so (an unreadable image, too few samples for ``features``).
    """
    fingerprints = (split.train.fingerprint(), split.val.fingerprint())
    if cache is None or None in fingerprints:
        return _prepare(split, block, features)
    inputs = {"train": fingerprints[0], "val": fingerprints[1], "class_names": list(split.class_names),
              "block": block, "features": features}
    prepared = cache.load(inputs)
    if prepared is None:
        prepared = _prepare(split, block, features)
        cache.store(inputs, prepared)
    return prepared


def _prepare(split: Split, block: int, features: int) -> Prepared:
    preprocessor = Preprocessor(n_features=features, block=block)
    x_train = preprocessor.fit_transform(split.train)
    x_val, y_val = split.val.arrays(preprocessor.transform)
    # the first dense layer learns faster from centred, unit-scale inputs (statistics of the training split)
    mean, scale = x_train.mean(axis=0), x_train.std(axis=0) + 1e-12
    arrays = ((x_train - mean) / scale, split.train.labels.astype(np.float64), (x_val - mean) / scale,
              y_val.astype(np.float64))
    # what turns an image into the model's input, saved with the weights so a checkpoint is usable on its own
    return arrays, {"preprocessor": preprocessor.state(), "standardize": {"mean": mean, "scale": scale}}
