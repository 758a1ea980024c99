"""Seed-shaped synthetic images: two classes that a small model can learn only in part.

The real PetImages set cannot be downloaded here, so this is the default data
of the seed workload: 180x180 RGB images, two balanced classes. Every image
is a striped, roughly elliptical object, brighter on average than its plain
background, plus Gaussian pixel noise. Background colour, object colour,
position, size, tilt, stripe frequency, phase and contrast are random with
the same distribution for both classes; three things depend on the class,
each with distributions that overlap between the classes:

* the object's colour: red shifted by -TINT (class 0) or +TINT (class 1) and
  blue by the opposite, on top of a uniform random colour in [0.4, 1];
* its shape: log(height / width) ~ N(-ASPECT or +ASPECT, 0.5), tilted by
  N(0, 0.25 rad), so class 0 tends to be wide and class 1 tall;
* its stripes: they run diagonally one way or the other, their normal at
  about -45 degrees (class 0) or +45 degrees (class 1), standard deviation
  35 degrees.

Colour and shape leave a partial trace in a linear projection of the pixels;
the stripes average out under any linear map because their phase is random,
so using them takes a nonlinear, texture-sensitive model. Measured (seed 0,
800 training and 400 validation images, 10x10-pixel block averages): a
logistic regression on 8 principal components reaches 0.74 validation
accuracy, on 32 components 0.77. The scene scales with the image: at 36x36
pixels with 2x2 blocks (1,600 training images) the same gives 0.73 and 0.75.
Images are rendered when loaded, from a few numbers per sample (one
compiled pass over each image's pixels).
"""

from __future__ import annotations

import collections
import functools
import hashlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numba
import numpy as np

from qsim_core.threads import usable_cores

from .base import (
    SEED_IMAGE_SIZE,
    Dataset,
    Split,
    check_count,
    check_image_dtype,
    check_image_size,
    to_image_dtype,
)

#: samples rendered at once by one thread (bounds the float32 scratch memory)
_RENDER_CHUNK = 64
#: chunks in flight per render thread (bounds the memory of chunks rendered but not taken yet)
_CHUNKS_PER_THREAD = 2
#: standard deviation of the Gaussian pixel noise (unit intensity scale)
NOISE = 0.1
#: class-dependent shift of the object's red (+) and blue (-) channels: -TINT for class 0, +TINT for class 1
TINT = 0.1
#: mean log aspect ratio (height / width) of the object: -ASPECT for class 0, +ASPECT for class 1
ASPECT = 0.5


class SyntheticImages(Dataset):
    """Synthetic images rendered on demand from per-sample parameters.

    Args:
        labels: class of every sample ``[N]`` (0 or 1).
        rng: draws every sample's parameters, including its noise seed.
        image_size: ``(height, width)`` in pixels.
        dtype: ``"uint8"`` (0..255) or ``"float32"`` ([0, 1]).
    """

    def __init__(self, labels: np.ndarray, rng: np.random.Generator,
                 image_size: tuple[int, int] = SEED_IMAGE_SIZE, dtype: str = "uint8") -> None:
        super().__init__(labels)
        check_image_dtype(dtype)
        self.image_size = check_image_size(image_size)
        self.dtype = dtype
        n = len(self.labels)
        sign = 2.0 * self.labels - 1.0  # -1 for class 0, +1 for class 1
        # positions and sizes in units of the image's width/height, so any resolution shows the same scene
        self._background = rng.uniform(0.05, 0.6, (n, 3))
        tint = TINT * sign[:, np.newaxis] * np.array([1.0, 0.0, -1.0])
        self._foreground = np.clip(rng.uniform(0.4, 1.0, (n, 3)) + tint, 0.0, 1.0)
        self._center = rng.uniform(0.35, 0.65, (n, 2))
        log_aspect = rng.normal(ASPECT * sign, 0.5)
        radius = rng.uniform(0.12, 0.22, n)
        self._radii = np.stack([radius * np.exp(-log_aspect / 2), radius * np.exp(log_aspect / 2)], axis=1)
        self._tilt = rng.normal(0.0, 0.25, n)
        self._stripe_angle = rng.normal(sign * np.pi / 4, np.deg2rad(35.0))
        self._frequency = rng.uniform(4.0, 10.0, n)  # stripes per image width
        self._phase = rng.uniform(0.0, 2 * np.pi, n)
        self._contrast = rng.uniform(0.3, 0.9, n)
        self._noise_seed = rng.integers(0, 2**63, n)

    def fingerprint(self) -> str:
        """SHA-256 of what the images are rendered from: size, dtype, labels and every per-sample number."""
        digest = hashlib.sha256(repr((type(self).__name__, self.image_size, self.dtype)).encode())
        for array in (self.labels, self._background, self._foreground, self._center, self._radii, self._tilt,
                      self._stripe_angle, self._frequency, self._phase, self._contrast, self._noise_seed):
            digest.update(repr((array.dtype.str, array.shape)).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    def load(self, indices: np.ndarray) -> np.ndarray:
        """Rendered images ``[B, height, width, 3]``; the same index always gives the same image.

        Chunks of samples render on a pool of threads (the compiled pass
        and NumPy's noise draw release the GIL, so they use every core), each converted
        to ``dtype`` at once, so no float32 copy of the whole batch is held (see :meth:`chunks`).
        """
        indices = np.asarray(indices, dtype=np.int64)
        if not len(indices):
            return to_image_dtype(np.empty((0, *self.image_size, 3), np.float32), self.dtype)
        return np.concatenate(list(self.chunks(indices, len(indices))))

    def chunks(self, indices: np.ndarray, chunk_size: int) -> Iterator[np.ndarray]:
        """Rendered images at ``indices`` in order, ``min(chunk_size, 64)`` at a time.

        The chunks render on the pool of threads, a bounded number ahead of the
        caller, so the caller's work on one chunk (pooling, when a :class:`~qstore.data.Preprocessor`
        is fitted) overlaps the rendering of the next ones and no array of all the images is built.
        """
        indices = np.asarray(indices, dtype=np.int64)
        step = min(chunk_size, _RENDER_CHUNK)
        pending: collections.deque[Future[np.ndarray]] = collections.deque()
        for start in range(0, len(indices), step):
            pending.append(_render_pool().submit(self._render_as_dtype, indices[start:start + step]))
            if len(pending) >= _CHUNKS_PER_THREAD * _render_threads():
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def _render_as_dtype(self, rows: np.ndarray) -> np.ndarray:
        return to_image_dtype(self._render(rows), self.dtype)

    def _render(self, rows: np.ndarray) -> np.ndarray:
        height, width = self.image_size
        out = np.empty((len(rows), height, width, 3), np.float32)
        for image, row in zip(out, rows, strict=True):
            # float32 scene numbers, as the pixels are float32 (float64 arithmetic would double the work)
            scene = np.concatenate([self._center[row], self._radii[row], [
                self._tilt[row], self._stripe_angle[row], self._frequency[row], self._phase[row],
                self._contrast[row]]]).astype(np.float32)
            noise = np.random.default_rng(self._noise_seed[row]).standard_normal(image.shape, dtype=np.float32)
            _render_image(image, scene, self._background[row].astype(np.float32),
                          self._foreground[row].astype(np.float32), noise)
        return out


@numba.njit(cache=True, nogil=True)
def _render_image(out: np.ndarray, scene: np.ndarray, background: np.ndarray, foreground: np.ndarray,
                  noise: np.ndarray) -> None:
    """One image into ``out [H, W, 3]`` (float32, [0, 1]), in one pass over its pixels.

    ``scene`` holds center x, y, radii along, across, tilt, stripe angle, frequency, phase, contrast;
    ``noise [H, W, 3]`` standard normals (drawn by NumPy: numba's own float32 normals are not NumPy's
    numbers, one in about 70,000 differs and shifts the rest).
    """
    height, width = out.shape[0], out.shape[1]
    cx, cy, rx, ry, tilt, angle, frequency, phase, contrast = scene
    cos_t, sin_t = np.cos(tilt), np.sin(tilt)
    cos_a, sin_a = np.cos(angle), np.sin(angle)
    two_pi_f = np.float32(2 * np.pi) * frequency
    sigma = np.float32(NOISE)
    for i in range(height):
        dv = (np.float32(i) + np.float32(0.5)) / np.float32(height) - cy
        for j in range(width):
            du = (np.float32(j) + np.float32(0.5)) / np.float32(width) - cx
            along = (du * cos_t + dv * sin_t) / rx
            across = (dv * cos_t - du * sin_t) / ry
            r2 = along * along + across * across
            # a super-Gaussian exp(-r^4): nearly flat inside, falling from 0.9 to 0.1 between 0.57 and 1.23 radii
            mask = np.exp(-(r2 * r2))
            wave = np.sin(two_pi_f * (du * cos_a + dv * sin_a) + phase)
            shade = np.float32(1.0) - contrast * np.float32(0.5) * (np.float32(1.0) + wave)
            for c in range(3):
                value = background[c] + mask * (foreground[c] * shade - background[c]) \
                    + sigma * noise[i, j, c]
                out[i, j, c] = min(max(value, np.float32(0.0)), np.float32(1.0))


@functools.cache
def _render_threads() -> int:
    """Threads that render images: one per core, at most 8."""
    return min(8, usable_cores())


@functools.cache
def _render_pool() -> ThreadPoolExecutor:
    """The threads that render images, started on first use and kept."""
    return ThreadPoolExecutor(_render_threads(), thread_name_prefix="qstore-render")


def synthetic(n_train: int = 800, n_val: int = 200, seed: int = 0, *,
              image_size: tuple[int, int] = SEED_IMAGE_SIZE, dtype: str = "uint8") -> Split:
    """The seed workload's default data: synthetic, balanced, deterministic by ``seed``.

    The two splits are drawn independently (no image is in both) and each is
    balanced: ``n // 2`` samples of each class, the odd one out in class 0.
    The training split depends only on ``seed`` and ``n_train``, not on ``n_val``.

    Args:
        n_train: training images (the seed workload: 800).
        n_val: validation images (the seed workload: 200).
        seed: the same seed gives the same images and labels.
        image_size: ``(height, width)`` in pixels; the scene scales with it.
        dtype: ``"uint8"`` (0..255) or ``"float32"`` ([0, 1]).

    Returns:
        A :class:`Split` of :class:`SyntheticImages` ``[height, width, 3]``,
        class names ``("class 0", "class 1")``.

    Examples:
        >>> split = synthetic(8, 4, seed=1, image_size=(36, 36))
        >>> images, labels = split.train.arrays()
        >>> images.shape, images.dtype, labels.tolist()
        ((8, 36, 36, 3), dtype('uint8'), [0, 1, 1, 1, 0, 1, 0, 0])
    """
    train_rng, val_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))

    def split(n: int, rng: np.random.Generator) -> SyntheticImages:
        labels = rng.permutation(np.arange(n) % 2 == 1).astype(np.int64)  # balanced, in random order
        return SyntheticImages(labels, rng, image_size, dtype)

    check_count("n_train", n_train, minimum=1)
    check_count("n_val", n_val, minimum=0)
    return Split(split(n_train, train_rng), split(n_val, val_rng), ("class 0", "class 1"))
