"""Datasets for the hybrid models: PetImages folders, seed-shaped synthetic images, scikit-learn's digits.

Every source returns a :class:`Split` of two :class:`Dataset` objects (train
and validation) with the same interface: ``len``, ``labels [N]``,
``load(indices)``, ``batches(rng, batch_size=32)`` (one reshuffled epoch) and
``arrays(transform)``. :class:`Preprocessor` turns images into circuit angles,
fitted on the training split only; :class:`DataConfig`, :func:`load_dataset` and
:func:`prepare_data` (:mod:`qstore.data.prepare`) take a run's data settings to the model's inputs,
which :class:`PreparedCache` (:mod:`qstore.data.cache`) keeps on disk for synthetic images.

Examples:
    >>> import numpy as np
    >>> from qstore.data import Preprocessor, synthetic
    >>> split = synthetic(40, 10, seed=0, image_size=(36, 36))
    >>> prep = Preprocessor(n_features=8, block=2).fit(split.train)
    >>> x_train, y_train, x_val, y_val = split.arrays(prep.transform)
    >>> x_train.shape, x_val.shape, bool(x_train.min() >= 0 and x_train.max() <= np.pi)
    ((40, 8), (10, 8), True)
"""

from .base import BATCH_SIZE, IMAGE_DTYPES, SEED_IMAGE_SIZE, ArrayDataset, DataError, Dataset, Split, stratified_split
from .cache import CACHE_ENV, CacheWarning, PreparedCache, default_cache_dir
from .petimages import ImageFiles, decode_image, index_folder, load_petimages
from .prepare import DataConfig, load_dataset, prepare_data
from .preprocess import Preprocessor
from .sklearn_digits import digits
from .synthetic_images import SyntheticImages, synthetic

__all__ = [
    "BATCH_SIZE",
    "CACHE_ENV",
    "IMAGE_DTYPES",
    "SEED_IMAGE_SIZE",
    "ArrayDataset",
    "CacheWarning",
    "DataConfig",
    "DataError",
    "Dataset",
    "ImageFiles",
    "PreparedCache",
    "Preprocessor",
    "Split",
    "SyntheticImages",
    "decode_image",
    "default_cache_dir",
    "digits",
    "index_folder",
    "load_dataset",
    "load_petimages",
    "prepare_data",
    "stratified_split",
    "synthetic",
]
