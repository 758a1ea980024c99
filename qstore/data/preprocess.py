"""Images to circuit inputs: block averages, PCA and scaling to rotation angles, fitted on training data only."""

from __future__ import annotations

from collections.abc import Mapping

import numba
import numpy as np

from .base import DataError, Dataset, check_count

#: images pooled at once when fitting on a dataset (at most; it may load fewer at a time)
_POOL_CHUNK = 256
#: what :meth:`Preprocessor.state` returns and :meth:`Preprocessor.from_state` needs
_STATE_KEYS = ("block", "angle_range", "mean", "components", "feature_min", "feature_max")


class Preprocessor:
    """A fitted transform from images ``[N, H, W, C]`` to angles ``[N, n_features]`` (float64, radians).

    Three steps: average over ``block x block`` pixel blocks (trailing rows and
    columns that do not fill a block are dropped), project onto the first
    ``n_features`` principal components, and scale each component linearly
    so its training minimum and maximum land on ``angle_range``. Every fitted
    value (mean, components, minima, maxima) comes from the data given to
    :meth:`fit`, which must be the training split: validation and test
    images are only transformed, and values beyond the training range are
    clipped to ``angle_range``.

    Args:
        n_features: components kept, one angle per qubit (the seed circuit: 8).
        block: block side in pixels; 10 turns 180x180 images into 18x18 (972
            values with 3 channels), 1 keeps every pixel.
        angle_range: ``(low, high)`` in radians.

    Raises:
        DataError: ``n_features`` or ``block`` is not a positive integer, or
            ``angle_range`` is not two finite increasing numbers.

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> train, val = rng.random((50, 12, 12, 3)), rng.random((5, 12, 12, 3))
        >>> prep = Preprocessor(n_features=4, block=3).fit(train)
        >>> prep.transform(val).shape
        (5, 4)
    """

    def __init__(self, n_features: int = 8, block: int = 1, angle_range: tuple[float, float] = (0.0, np.pi)) -> None:
        check_count("n_features", n_features, minimum=1)
        check_count("block", block, minimum=1)
        low, high = (float(v) for v in angle_range)
        if not np.isfinite(low) or not np.isfinite(high) or low >= high:
            raise DataError(f"angle_range must be finite (low, high) with low < high, got {angle_range!r}")
        self.n_features = int(n_features)
        self.block = int(block)
        self.angle_range = (low, high)
        self.mean: np.ndarray | None = None  # [D]: pooled training mean
        self.components = np.empty((0, 0))  # [n_features, D]: principal axes, rows of unit length
        self.feature_min = np.empty(0)  # [n_features]: training minimum of each projection
        self.feature_max = np.empty(0)  # [n_features]: training maximum of each projection

    def pool(self, images: np.ndarray) -> np.ndarray:
        """Block averages of ``images [N, H, W, C]`` as float64 rows ``[N, (H // block) * (W // block) * C]``.

        ``uint8`` images are read as 0..255 and scaled to [0, 1]; float images are taken as they are.

        Raises:
            DataError: ``images`` is not 4-D or is smaller than one block.
        """
        if images.ndim != 4:
            raise DataError(f"images must be [N, height, width, channels], got shape {images.shape}")
        n, height, width, channels = images.shape
        rows, cols = height // self.block, width // self.block
        if rows == 0 or cols == 0:
            raise DataError(f"images of {height}x{width} pixels are smaller than one {self.block}x{self.block} block")
        scale = (1.0 / 255.0 if images.dtype == np.uint8 else 1.0) / self.block ** 2
        out = np.zeros((n, rows, cols, channels))
        # no float copy of the pixels: one compiled pass reads them as they are and sums in float64
        _block_sums(images, self.block, out)
        return (out * scale).reshape(n, -1)

    def fit(self, train: Dataset | np.ndarray) -> Preprocessor:
        """Fit the mean, the components and the angle scaling on the training images.

        Args:
            train: the training split (a :class:`Dataset`, loaded and pooled
                chunk by chunk) or its images ``[N, H, W, C]``.

        Returns:
            ``self``, fitted.

        Raises:
            DataError: fewer samples or pooled values than ``n_features``.
        """
        self._fit_pooled(self._pooled(train))
        return self

    def fit_transform(self, train: Dataset | np.ndarray) -> np.ndarray:
        """:meth:`fit` on ``train`` and return its angles ``[N, n_features]``, loading every image once."""
        pooled = self._pooled(train)
        self._fit_pooled(pooled)
        return self._angles(pooled)

    def transform(self, images: np.ndarray) -> np.ndarray:
        """Angles ``[N, n_features]`` (float64, radians, within ``angle_range``) of ``images [N, H, W, C]``.

        Raises:
            DataError: not fitted yet, or the images pool to a different size than the training images.
        """
        if self.mean is None:
            raise DataError("the preprocessor is not fitted: call fit(training images) first")
        pooled = self.pool(images)
        if pooled.shape[1] != self.mean.shape[0]:
            raise DataError(f"images of shape {images.shape[1:]} pool to {pooled.shape[1]} values per sample, "
                            f"but the preprocessor was fitted on {self.mean.shape[0]}")
        return self._angles(pooled)

    def _pooled(self, train: Dataset | np.ndarray) -> np.ndarray:
        if not isinstance(train, Dataset):
            return self.pool(train)
        # pooling is image by image, so any chunks give the same rows: let the dataset choose and load ahead
        rows = np.arange(len(train))
        return np.concatenate([self.pool(chunk) for chunk in train.chunks(rows, _POOL_CHUNK)] or [
            self.pool(train.load(rows))])

    def _fit_pooled(self, pooled: np.ndarray) -> None:
        if self.n_features > min(pooled.shape):
            raise DataError(f"n_features={self.n_features} needs at least as many training samples and pooled "
                            f"values per sample, got {pooled.shape[0]} samples of {pooled.shape[1]} values")
        self.mean = pooled.mean(axis=0)
        _, _, axes = np.linalg.svd(pooled - self.mean, full_matrices=False)
        components = axes[:self.n_features]
        # an axis's sign is arbitrary (LAPACK may flip it): fix it so the largest entry is positive
        largest = components[np.arange(self.n_features), np.abs(components).argmax(axis=1)]
        self.components = components * np.sign(largest)[:, np.newaxis]
        projected = (pooled - self.mean) @ self.components.T
        self.feature_min, self.feature_max = projected.min(axis=0), projected.max(axis=0)

    def _angles(self, pooled: np.ndarray) -> np.ndarray:
        projected = (pooled - self.mean) @ self.components.T
        # a component constant on the training split (span 0) maps every value to the low end
        span = np.where(self.feature_max > self.feature_min, self.feature_max - self.feature_min, 1.0)
        unit = np.clip((projected - self.feature_min) / span, 0.0, 1.0)
        low, high = self.angle_range
        return low + unit * (high - low)

    def state(self) -> dict[str, np.ndarray]:
        """Settings and fitted values as arrays (copies), e.g. for a checkpoint; see :meth:`from_state`.

        Raises:
            DataError: not fitted yet.
        """
        if self.mean is None:
            raise DataError("the preprocessor is not fitted: nothing to save")
        return {"block": np.array(self.block), "angle_range": np.array(self.angle_range), "mean": self.mean.copy(),
                "components": self.components.copy(), "feature_min": self.feature_min.copy(),
                "feature_max": self.feature_max.copy()}

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray]) -> Preprocessor:
        """The fitted preprocessor that :meth:`state` described.

        Raises:
            DataError: a key is missing or the shapes do not fit together.
        """
        missing = [key for key in _STATE_KEYS if key not in state]
        if missing:
            raise DataError(f"preprocessor state lacks {missing}")
        components = np.asarray(state["components"], dtype=np.float64)
        if components.ndim != 2:
            raise DataError(f"preprocessor state: components must be [n_features, D], got shape {components.shape}")
        prep = cls(n_features=len(components), block=int(state["block"]),
                   angle_range=tuple(np.asarray(state["angle_range"], dtype=np.float64)))
        prep.mean = np.asarray(state["mean"], dtype=np.float64)
        prep.components = components
        prep.feature_min = np.asarray(state["feature_min"], dtype=np.float64)
        prep.feature_max = np.asarray(state["feature_max"], dtype=np.float64)
        shapes = [prep.mean.shape, components.shape, prep.feature_min.shape, prep.feature_max.shape]
        if shapes != [components.shape[1:], components.shape, *2 * [components.shape[:1]]]:
            raise DataError(f"preprocessor state shapes do not fit: mean, components, feature_min, feature_max "
                            f"have shapes {shapes}")
        return prep


@numba.njit(cache=True, nogil=True)
def _block_sums(images: np.ndarray, block: int, out: np.ndarray) -> None:
    """Add each ``block x block`` pixel block of ``images [N, H, W, C]`` into ``out [N, H // block, W // block, C]``
    (float64), reading the pixels in memory order."""
    n, rows, cols, channels = out.shape
    for k in range(n):
        for y in range(rows * block):
            r = y // block
            for x in range(cols * block):
                c = x // block
                for ch in range(channels):
                    out[k, r, c, ch] += images[k, y, x, ch]
