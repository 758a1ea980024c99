"""qstore.data.cache: a hit is the fresh preparation bit for bit; every input is in the key; damaged files are
detected and replaced; concurrent writers leave one whole file."""

from __future__ import annotations

import multiprocessing
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from qstore.cli import main
from qstore.cli.train import CACHED_NOTE
from qstore.data import ArrayDataset, CacheWarning, PreparedCache, Split, prepare_data, synthetic
from qstore.data.cache import MAGIC

SMALL = {"n_train": 24, "n_val": 8, "seed": 3, "image_size": (36, 36)}
BLOCK, FEATURES = 4, 5


def _split(**changes) -> Split:
    arguments = SMALL | changes
    return synthetic(arguments["n_train"], arguments["n_val"], arguments["seed"], image_size=arguments["image_size"],
                     dtype=arguments.get("dtype", "float32"))


def _flat(prepared) -> dict[str, np.ndarray]:
    arrays, extras = prepared
    return {f"array {k}": a for k, a in enumerate(arrays)} | {
        f"{group}/{name}": value for group, values in extras.items() for name, value in values.items()}


def assert_bit_identical(got, expected) -> None:
    got, expected = _flat(got), _flat(expected)
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape, name
        assert got[name].tobytes() == value.tobytes(), name


@pytest.fixture(scope="module")
def fresh():
    """The small split's preparation without any cache."""
    return prepare_data(_split(), BLOCK, FEATURES)


def _inputs(split: Split, block: int = BLOCK, features: int = FEATURES) -> dict:
    """The inputs prepare_data keys its entry by (to find the file a test damages)."""
    return {"train": split.train.fingerprint(), "val": split.val.fingerprint(), "class_names": list(split.class_names),
            "block": block, "features": features}


def test_a_hit_is_the_fresh_preparation_bit_for_bit(tmp_path, fresh):
    writer = PreparedCache(tmp_path)
    assert_bit_identical(prepare_data(_split(), BLOCK, FEATURES, writer), fresh)
    assert (writer.hits, writer.misses) == (0, 1)
    assert writer.path(_inputs(_split())).is_file()
    reader = PreparedCache(tmp_path)  # a later run: a new cache object on the same folder
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_bit_identical(prepare_data(_split(), BLOCK, FEATURES, reader), fresh)
    assert (reader.hits, reader.misses) == (1, 0)
    assert [path.name for path in (tmp_path / "data").iterdir()] == [writer.path(_inputs(_split())).name]


@pytest.mark.parametrize(("changes", "block", "features"), [
    ({"seed": 4}, BLOCK, FEATURES),
    ({"n_train": 26}, BLOCK, FEATURES),
    ({"n_val": 10}, BLOCK, FEATURES),
    ({"image_size": (40, 36)}, BLOCK, FEATURES),
    ({"dtype": "uint8"}, BLOCK, FEATURES),
    ({}, 3, FEATURES),
    ({}, BLOCK, 6),
])
def test_a_changed_input_misses_and_gets_its_own_data(tmp_path, fresh, changes, block, features):
    cache = PreparedCache(tmp_path)
    prepare_data(_split(), BLOCK, FEATURES, cache)
    changed = prepare_data(_split(**changes), block, features, cache)
    assert (cache.hits, cache.misses) == (0, 2)
    assert_bit_identical(changed, prepare_data(_split(**changes), block, features))
    assert len(list((tmp_path / "data").iterdir())) == 2


def test_the_code_and_the_blas_threads_are_in_the_key(tmp_path, monkeypatch):
    cache = PreparedCache(tmp_path)
    inputs = _inputs(_split())
    before = cache.path(inputs)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")  # the PCA's SVD rounds differently with another thread count
    assert cache.path(inputs) != before
    monkeypatch.delenv("OPENBLAS_NUM_THREADS")
    assert cache.path(inputs) == before
    monkeypatch.setattr("qstore.data.cache._source_digest", lambda: "edited qstore.data")
    assert cache.path(inputs) != before


def test_the_folder_is_qstore_cache_dir_else_the_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("QSTORE_CACHE_DIR", str(tmp_path / "chosen"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert PreparedCache().folder == tmp_path / "chosen" / "data"
    monkeypatch.delenv("QSTORE_CACHE_DIR")
    assert PreparedCache().folder == tmp_path / "xdg" / "qstore" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert PreparedCache().folder == Path.home() / ".cache" / "qstore" / "data"
    assert PreparedCache(tmp_path).folder == tmp_path / "data"


def _damage(path: Path, how: str, other: Path) -> None:
    blob = path.read_bytes()
    header = len(MAGIC) + 32
    if how == "truncated":
        path.write_bytes(blob[:len(blob) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "flipped byte":
        middle = (header + len(blob)) // 2
        path.write_bytes(blob[:middle] + bytes([blob[middle] ^ 1]) + blob[middle + 1:])
    elif how == "other magic":
        path.write_bytes(b"X" + blob[1:])
    elif how == "another key's file":
        path.write_bytes(other.read_bytes())  # whole and valid, but the entry of other inputs
    else:
        raise AssertionError(how)


@pytest.mark.parametrize(("how", "reason"), [
    ("truncated", "checksum mismatch"),
    ("empty", "not a qstore data cache file"),
    ("flipped byte", "checksum mismatch"),
    ("other magic", "not a qstore data cache file"),
    ("another key's file", "another key's data"),
])
def test_a_damaged_file_is_detected_prepared_afresh_and_replaced(tmp_path, fresh, how, reason):
    cache = PreparedCache(tmp_path)
    prepare_data(_split(), BLOCK, FEATURES, cache)
    prepare_data(_split(seed=9), BLOCK, FEATURES, cache)
    path, other = cache.path(_inputs(_split())), cache.path(_inputs(_split(seed=9)))
    _damage(path, how, other)
    with pytest.warns(CacheWarning, match=reason):
        assert_bit_identical(prepare_data(_split(), BLOCK, FEATURES, cache), fresh)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the damaged file was replaced by a whole one
        assert_bit_identical(prepare_data(_split(), BLOCK, FEATURES, PreparedCache(tmp_path)), fresh)


def test_an_unwritable_folder_costs_a_warning_not_the_data(tmp_path, fresh):
    blocked = tmp_path / "a file, not a folder"
    blocked.write_text("")
    with pytest.warns(CacheWarning) as caught:
        assert_bit_identical(prepare_data(_split(), BLOCK, FEATURES, PreparedCache(blocked)), fresh)
    # the folder can be neither read nor written: each says so, and the run goes on
    assert [re.search(r"is unusable|cannot be written", str(warning.message))[0] for warning in caught] == [
        "is unusable", "cannot be written"]


def test_data_without_a_fingerprint_is_never_cached(tmp_path):
    rng = np.random.default_rng(0)
    split = Split(ArrayDataset(rng.random((20, 8, 8, 3)), np.arange(20) % 2),
                  ArrayDataset(rng.random((6, 8, 8, 3)), np.arange(6) % 2), ("a", "b"))
    cache = PreparedCache(tmp_path)
    assert_bit_identical(prepare_data(split, 2, 3, cache), prepare_data(split, 2, 3))
    assert (cache.hits, cache.misses) == (0, 0) and not (tmp_path / "data").exists()


def _write_repeatedly(root: str, inputs: dict, prepared, times: int, start) -> None:
    start.wait()
    cache = PreparedCache(root)
    for _ in range(times):
        assert cache.store(inputs, prepared) is not None


def test_concurrent_writers_and_readers_see_only_whole_files(tmp_path, fresh):
    inputs = _inputs(_split())
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    writers = [context.Process(target=_write_repeatedly, args=(str(tmp_path), inputs, fresh, 30, start))
               for _ in range(3)]
    for writer in writers:
        writer.start()
    reader = PreparedCache(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a partial file would be a CacheWarning
        start.set()
        while any(writer.is_alive() for writer in writers):
            found = reader.load(inputs)
            if found is not None:
                assert_bit_identical(found, fresh)
        for writer in writers:
            writer.join()
        assert all(writer.exitcode == 0 for writer in writers)
        assert_bit_identical(reader.load(inputs), fresh)
    assert reader.hits >= 1
    assert [path.name for path in (tmp_path / "data").iterdir()] == [reader.path(inputs).name]  # no temporary left


def test_the_commands_use_the_cache_unless_told_not_to(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QSTORE_CACHE_DIR", str(tmp_path / "cache"))
    argv = ["train", "--n-train", "24", "--n-val", "8", "--epochs", "1", "--quiet", "--output", str(tmp_path / "out")]
    printed = {}
    for name, extra in [("first", []), ("second", []), ("no cache", ["--no-cache"])]:
        assert main(argv + extra) == 0
        printed[name] = capsys.readouterr().out
    assert [CACHED_NOTE in out for out in printed.values()] == [False, True, False]
    assert f"{CACHED_NOTE} {tmp_path / 'cache' / 'data'}" in printed["second"]
    assert len(os.listdir(tmp_path / "cache" / "data")) == 1
    # the same data either way: the same training history
    histories = [out[out.index("quantum model"):out.index("circuits executed")] for out in printed.values()]
    assert histories[0] == histories[1] == histories[2]
