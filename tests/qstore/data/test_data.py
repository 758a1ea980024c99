"""qstore.data: the PetImages loader on generated folders, synthetic images, digits, preprocessing, batches."""

from __future__ import annotations

import doctest
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression

import qstore.data
from qstore.data import (
    ArrayDataset,
    DataError,
    ImageFiles,
    Preprocessor,
    decode_image,
    digits,
    load_petimages,
    stratified_split,
    synthetic,
)

SIZE = (24, 20)  # (height, width) the loader resizes the 40x30 test images to


def _jpeg_bytes(rng: np.random.Generator, mode: str = "RGB") -> bytes:
    image = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    return buffer.getvalue()


def _png_bytes(rng: np.random.Generator, mode: str) -> bytes:
    image = Image.fromarray(rng.integers(0, 256, (30, 40, 4), dtype=np.uint8), "RGBA").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _write_class(folder: Path, good: int, rng: np.random.Generator) -> None:
    folder.mkdir(parents=True)
    for k in range(good):
        (folder / f"{k:03d}.jpg").write_bytes(_jpeg_bytes(rng))


@pytest.fixture
def pet_folder(tmp_path: Path) -> Path:
    """PetImages-like: Cat has 6 good JPEGs, 4 odd but readable files and 2 unreadable; Dog 8 good, 1 unreadable."""
    rng = np.random.default_rng(0)
    root = tmp_path / "PetImages"
    _write_class(root / "Cat", 6, rng)
    _write_class(root / "Dog", 8, rng)
    cat = root / "Cat"
    (cat / "gray.jpg").write_bytes(_jpeg_bytes(rng, "L"))
    (cat / "cmyk.JPG").write_bytes(_jpeg_bytes(rng, "CMYK"))
    (cat / "png_named.jpg").write_bytes(_png_bytes(rng, "RGB"))
    (cat / "rgba.jpeg").write_bytes(_png_bytes(rng, "RGBA"))
    (cat / "empty.jpg").write_bytes(b"")
    (cat / "truncated.jpg").write_bytes(_jpeg_bytes(rng)[:700])
    (cat / "Thumbs.db").write_bytes(b"\x00" * 64)  # in the real set; not an image name, so not a sample
    (root / "Dog" / "not_image.jpg").write_text("<html>404</html>")
    return root


@pytest.fixture
def balanced_folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    root = tmp_path / "balanced"
    _write_class(root / "Cat", 15, rng)
    _write_class(root / "Dog", 15, rng)
    return root


def test_every_readable_file_is_decoded_to_rgb_and_the_unreadable_are_reported(pet_folder: Path):
    # 18 of 21 candidates: the quotas (Cat 10, Dog 8) equal the readable counts, so every file is checked
    split = load_petimages(pet_folder, n_train=14, n_val=4, seed=0, image_size=SIZE)
    reasons = {path.name: reason for path, reason in split.skipped}
    assert len(split.skipped) == 3
    assert reasons["empty.jpg"] == "empty file (0 bytes)"
    assert reasons["truncated.jpg"].startswith("OSError: image file is truncated")
    assert reasons["not_image.jpg"].startswith("UnidentifiedImageError")
    kept = {path.name for path in split.train.paths + split.val.paths}
    assert {"gray.jpg", "cmyk.JPG", "png_named.jpg", "rgba.jpeg"} <= kept and not kept & set(reasons)
    assert "Thumbs.db" not in kept
    assert split.class_names == ("Cat", "Dog")
    images, labels = split.train.arrays()
    assert images.shape == (14, *SIZE, 3) and images.dtype == np.uint8 and labels.dtype == np.int64


def test_grayscale_becomes_three_equal_channels_and_float32_is_unit_range(pet_folder: Path):
    gray = decode_image(pet_folder / "Cat" / "gray.jpg", SIZE)
    assert gray.shape == (*SIZE, 3) and gray.dtype == np.uint8
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 0], gray[..., 2])
    files = ImageFiles([pet_folder / "Cat" / "gray.jpg", pet_folder / "Cat" / "rgba.jpeg"], [0, 0], SIZE, "float32")
    as_float = files.load(np.array([0, 1]))
    assert as_float.dtype == np.float32 and as_float.shape == (2, *SIZE, 3)
    np.testing.assert_allclose(as_float[0], gray / 255.0, atol=1e-7)
    assert 0.0 <= as_float.min() and as_float.max() <= 1.0


def test_split_is_stratified_disjoint_and_selected_by_the_seed(balanced_folder: Path):
    split = load_petimages(balanced_folder, 16, 8, seed=3, image_size=SIZE)
    assert not set(split.train.paths) & set(split.val.paths)
    assert np.bincount(split.train.labels).tolist() == [8, 8]
    assert np.bincount(split.val.labels).tolist() == [4, 4]
    assert all(path.parent.name == ("Cat", "Dog")[label]
               for path, label in zip(split.train.paths + split.val.paths,
                                      np.concatenate([split.train.labels, split.val.labels]), strict=True))
    again = load_petimages(balanced_folder, 16, 8, seed=3, image_size=SIZE)
    assert again.train.paths == split.train.paths and again.val.paths == split.val.paths
    other = load_petimages(balanced_folder, 16, 8, seed=4, image_size=SIZE)
    assert other.train.paths != split.train.paths


def test_stratified_split_follows_class_proportions_by_largest_remainder():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    train, val = stratified_split(labels, 50, 20, seed=0)
    assert np.bincount(labels[train]).tolist() == [30, 15, 5]
    assert np.bincount(labels[val]).tolist() == [12, 6, 2]
    assert not set(train) & set(val)


def test_batches_cover_the_split_once_per_epoch_and_reshuffle():
    data = ArrayDataset(np.arange(70)[:, np.newaxis] * 10, np.arange(70) % 2)
    rng = np.random.default_rng(5)
    epochs = []
    for _ in range(2):
        batches = list(data.batches(rng))
        assert [len(x) for x, _ in batches] == [32, 32, 6]  # the last partial batch is kept
        x = np.concatenate([x for x, _ in batches])[:, 0]
        y = np.concatenate([y for _, y in batches])
        assert sorted(x) == list(range(0, 700, 10)) and np.array_equal(y, (x // 10) % 2)
        epochs.append(x)
    assert not np.array_equal(epochs[0], epochs[1])
    replay = np.random.default_rng(5)
    for expected in epochs:  # the same seed replays the same epochs
        assert np.array_equal(np.concatenate([x for x, _ in data.batches(replay)])[:, 0], expected)
    state = rng.bit_generator.state
    in_order = np.concatenate([x for x, _ in data.batches(rng, batch_size=7, shuffle=False)])[:, 0]
    assert np.array_equal(in_order, np.arange(0, 700, 10)) and rng.bit_generator.state == state


def test_image_batches_decode_lazily_in_the_requested_sizes(balanced_folder: Path):
    split = load_petimages(balanced_folder, 16, 8, seed=0, image_size=SIZE)
    shapes = [(x.shape, y.shape) for x, y in split.train.batches(np.random.default_rng(0), batch_size=5)]
    assert shapes == [((5, *SIZE, 3), (5,))] * 3 + [((1, *SIZE, 3), (1,))]


def test_a_file_that_breaks_after_the_split_is_named(balanced_folder: Path):
    split = load_petimages(balanced_folder, 4, 2, seed=0, image_size=SIZE)
    broken = split.train.paths[1]
    broken.write_bytes(b"garbage")
    with pytest.raises(DataError, match=re.escape(f"cannot decode {broken}: UnidentifiedImageError")):
        split.train.load(np.array([0, 1]))


def test_missing_or_empty_folders_are_named(tmp_path: Path):
    root = tmp_path / "PetImages"
    with pytest.raises(DataError, match=re.escape(f"image folder not found: {root} (expected {root}/<class>/*.jpg)")):
        load_petimages(root)
    _write_class(root / "Cat", 2, np.random.default_rng(0))
    with pytest.raises(DataError, match=re.escape(f"class folder not found: {root / 'Dog'} (expected one folder "
                                                  "per class: Cat, Dog)")):
        load_petimages(root)
    (root / "Dog").mkdir()
    (root / "Dog" / "Thumbs.db").touch()
    with pytest.raises(DataError, match=re.escape(f"class folder has no .jpg/.jpeg files: {root / 'Dog'}")):
        load_petimages(root)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_train": 25, "n_val": 10}, r"the split needs 35 samples \(train 25 \+ val 10\) but there are only 30 "
                                   r"\(Cat 15, Dog 15\)"),
    ({"n_train": 0}, "n_train must be an integer >= 1, got 0"),
    ({"n_val": -1}, "n_val must be an integer >= 0, got -1"),
    ({"n_train": 2.5}, "n_train must be an integer >= 1, got 2.5"),
    ({"image_size": (0, 10)}, r"image_size must be \(height, width\) in positive pixels, got \(0, 10\)"),
    ({"dtype": "float64"}, r"dtype must be one of \('uint8', 'float32'\), got 'float64'"),
    ({"classes": ("Cat", "Cat")}, "need at least two distinct class folder names"),
])
def test_impossible_requests_are_refused(balanced_folder: Path, kwargs, message):
    with pytest.raises(DataError, match=message):
        load_petimages(balanced_folder, **{"n_train": 4, "n_val": 2, **kwargs})


def test_a_class_without_enough_readable_files_is_named(tmp_path: Path):
    root = tmp_path / "pets"
    rng = np.random.default_rng(2)
    _write_class(root / "Cat", 1, rng)
    _write_class(root / "Dog", 3, rng)
    (root / "Cat" / "zero.jpg").touch()
    (root / "Cat" / "bad.jpg").write_bytes(b"\xff\xd8\xff not really")
    with pytest.raises(DataError, match=re.escape(f"{root}: class 'Cat' has only 1 usable samples of 3, the split "
                                                  "needs 2 (train 2 + val 0); 2 unreadable files skipped")):
        load_petimages(root, n_train=4, n_val=0, image_size=SIZE)


def test_synthetic_is_deterministic_balanced_and_disjoint():
    small = {"image_size": (24, 24)}
    split = synthetic(21, 10, seed=1, **small)
    x_train, y_train, x_val, y_val = split.arrays()
    assert x_train.shape == (21, 24, 24, 3) and x_train.dtype == np.uint8 and x_val.shape == (10, 24, 24, 3)
    assert np.bincount(y_train).tolist() == [11, 10] and np.bincount(y_val).tolist() == [5, 5]
    same = synthetic(21, 10, seed=1, **small).arrays()
    assert all(np.array_equal(a, b) for a, b in zip(same, (x_train, y_train, x_val, y_val), strict=True))
    assert np.array_equal(synthetic(21, 3, seed=1, **small).train.arrays()[0], x_train)  # train ignores n_val
    assert synthetic(21, 0, seed=1, **small).val.arrays()[0].shape == (0, 24, 24, 3)
    assert not np.array_equal(synthetic(21, 10, seed=2, **small).train.arrays()[0], x_train)
    flat_train = {image.tobytes() for image in x_train}
    assert not any(image.tobytes() in flat_train for image in x_val)
    # an image does not depend on the batch it is loaded with
    assert np.array_equal(split.train.load(np.array([7])), x_train[7:8])
    as_float = synthetic(21, 10, seed=1, dtype="float32", **small).train.arrays()[0]
    assert as_float.dtype == np.float32 and 0.0 <= as_float.min() and as_float.max() <= 1.0
    assert np.abs(as_float * 255.0 - x_train).max() <= 0.5 + 1e-3


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 65, 500])
def test_synthetic_chunks_are_the_images_one_by_one_in_order(chunk_size):
    dataset = synthetic(150, 0, seed=5, image_size=(12, 10), dtype="float32").train
    rows = np.random.default_rng(0).permutation(150)[:130]
    chunks = list(dataset.chunks(rows, chunk_size))
    assert [len(chunk) for chunk in chunks][:-1] == (len(chunks) - 1) * [min(chunk_size, 64)]
    one_by_one = np.concatenate([dataset.load(rows[k:k + 1]) for k in range(len(rows))])
    assert np.concatenate(chunks).tobytes() == one_by_one.tobytes() == dataset.load(rows).tobytes()


def test_fitting_on_a_dataset_is_fitting_on_its_images_bit_for_bit():
    split = synthetic(300, 40, seed=2, image_size=(20, 20), dtype="float32")
    from_dataset = Preprocessor(n_features=6, block=2)
    angles = from_dataset.fit_transform(split.train)
    images = split.train.arrays()[0]
    from_images = Preprocessor(n_features=6, block=2)
    assert angles.tobytes() == from_images.fit_transform(images).tobytes()
    for name, value in from_images.state().items():
        assert from_dataset.state()[name].tobytes() == value.tobytes(), name


def test_synthetic_classes_are_learnable_only_in_part():
    # measured: logistic regression on 8 principal components of 2x2-block averages of 36x36 images
    # (600 train / 400 val): 0.7425 validation accuracy with seed 0 (seeds 1, 2: 0.7275, 0.7875);
    # chance is 0.5 (sd 0.025 on 400 samples)
    split = synthetic(600, 400, seed=0, image_size=(36, 36))
    prep = Preprocessor(n_features=8, block=2).fit(split.train)
    x_train, y_train, x_val, y_val = split.arrays(prep.transform)
    accuracy = LogisticRegression(max_iter=1000).fit(x_train, y_train).score(x_val, y_val)
    assert 0.65 <= accuracy <= 0.85


def test_digits_are_the_two_requested_digits_mapped_to_0_and_1():
    split = digits(3, 8)
    source = load_digits()
    assert split.class_names == ("3", "8")
    assert split.train.x.shape == (286, 8, 8, 1) and split.val.x.shape == (71, 8, 8, 1)
    assert split.train.x.dtype == np.uint8 and split.train.x.max() == 255
    assert np.bincount(split.val.labels).tolist() == [36, 35]  # 183 threes, 174 eights: 71 split 36.4 / 34.6
    as_unit = digits(3, 8, dtype="float32")
    originals = {digit: {image.tobytes() for image in source.images[source.target == digit] / 16.0}
                 for digit in (3, 8)}
    for images, labels in (as_unit.train.arrays(), as_unit.val.arrays()):
        for image, label in zip(images, labels, strict=True):
            assert image[..., 0].astype(np.float64).tobytes() in originals[(3, 8)[label]]
    custom = digits(0, 1, n_train=100, n_val=50, seed=4)
    assert len(custom.train) == 100 and len(custom.val) == 50 and set(custom.train.labels) == {0, 1}


@pytest.mark.parametrize(("pair", "message"), [((3, 3), r"\(3, 3\)"), ((3, 10), r"\(3, 10\)")])
def test_digits_refuse_a_bad_pair(pair, message):
    with pytest.raises(DataError, match="need two distinct digits in 0..9, got " + message):
        digits(*pair)


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(8)
    return rng.integers(0, 256, (40, 12, 12, 3), dtype=np.uint8), rng.integers(0, 256, (10, 12, 12, 3), np.uint8)


def test_preprocessor_outputs_angles_and_matches_pca(images):
    train, val = images
    prep = Preprocessor(n_features=5, block=3).fit(train)
    angles = prep.transform(train)
    assert angles.shape == (40, 5) and angles.dtype == np.float64
    np.testing.assert_allclose(angles.min(axis=0), 0.0, atol=1e-12)  # the training range spans [0, pi]
    np.testing.assert_allclose(angles.max(axis=0), np.pi, atol=1e-12)
    val_angles = prep.transform(val)
    assert val_angles.shape == (10, 5) and 0.0 <= val_angles.min() and val_angles.max() <= np.pi
    pooled = train.reshape(40, 4, 3, 4, 3, 3).mean(axis=(2, 4)).reshape(40, -1) / 255.0
    reference = PCA(5).fit(pooled).components_
    np.testing.assert_allclose(np.abs(np.sum(reference * prep.components, axis=1)), 1.0, atol=1e-8)
    custom = Preprocessor(n_features=5, block=3, angle_range=(-1.0, 2.0)).fit(train).transform(train)
    np.testing.assert_allclose(custom, -1.0 + angles * 3.0 / np.pi, atol=1e-12)


def test_preprocessor_is_fitted_on_training_data_only(images):
    train, val = images
    prep = Preprocessor(n_features=4, block=2).fit(ArrayDataset(train, np.zeros(40)))  # a Dataset: chunked
    assert all(np.array_equal(a, b) for a, b in zip(
        prep.state().values(), Preprocessor(n_features=4, block=2).fit(train).state().values(), strict=True))
    before = prep.state()
    first = prep.transform(val)
    prep.transform(np.full_like(val, 255))  # extreme validation data: clipped, and changes nothing fitted
    assert np.array_equal(prep.transform(val), first)
    assert all(np.array_equal(before[key], value) for key, value in prep.state().items())
    extreme = prep.transform(np.full_like(val, 255))
    assert extreme.min() >= 0.0 and extreme.max() <= np.pi and np.isin(extreme, [0.0, np.pi]).any()
    restored = Preprocessor.from_state(prep.state())
    assert np.array_equal(restored.transform(val), first)


def test_preprocessor_treats_uint8_as_0_to_255(images):
    train, _ = images
    as_uint8 = Preprocessor(3, block=4).fit(train).transform(train)
    as_float = Preprocessor(3, block=4).fit(train / 255.0).transform(train / 255.0)
    np.testing.assert_allclose(as_uint8, as_float, atol=1e-9)


@pytest.mark.parametrize(("make", "message"), [
    (lambda train: Preprocessor(4).transform(train), r"not fitted: call fit\(training images\) first"),
    (lambda train: Preprocessor(4, block=3).fit(train).transform(train[:, :9]),
     r"images of shape \(9, 12, 3\) pool to 36 values per sample, but the preprocessor was fitted on 48"),
    (lambda train: Preprocessor(41).fit(train), "n_features=41 needs at least as many training samples"),
    (lambda train: Preprocessor(4).fit(train[..., 0]), r"images must be \[N, height, width, channels\]"),
    (lambda train: Preprocessor(4, block=13).fit(train), "smaller than one 13x13 block"),
    (lambda train: Preprocessor(4, angle_range=(1.0, 1.0)), "angle_range must be finite"),
    (lambda train: Preprocessor.from_state({"mean": np.zeros(3)}), "preprocessor state lacks"),
])
def test_preprocessor_errors(images, make, message):
    with pytest.raises(DataError, match=message):
        make(images[0])


@pytest.mark.parametrize("module", [qstore.data, qstore.data.preprocess, qstore.data.sklearn_digits,
                                    qstore.data.synthetic_images])
def test_docstring_examples(module):
    failures, tried = doctest.testmod(module)
    assert tried > 0 and failures == 0
