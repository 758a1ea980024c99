"""qstore.ml.checkpoint: exact round trips, atomic replacement, clear errors on bad input and damaged files."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

import qstore.ml.checkpoint as checkpoint_module
from qstore.data import Preprocessor
from qstore.ml.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from qstore.ml.optim import Adam


def _contents(seed: int) -> dict:
    """Everything a training run saves, with awkward names, dtypes and shapes."""
    rng = np.random.default_rng(seed)
    adam = Adam(0.01)
    params = {"0.W": rng.normal(size=(4, 3)), "0.b": np.zeros(3)}
    adam.step(params, {key: rng.normal(size=value.shape) for key, value in params.items()})
    rng.random(5)  # the generator is saved mid-stream
    return {
        "weights": {**params, "quantum": {"angles": rng.uniform(-np.pi, np.pi, (2, 8)).astype(np.float32),
                                          "mask": np.array([True, False]), "empty": np.empty((0, 3)),
                                          "0-d": np.array(7, dtype=np.int8), "amplitude": np.array([1 + 2j])},
                    "50%/odd.name": np.arange(3, dtype=np.uint16), ".": np.ones(1)},
        "optimizer": {**adam.state(), "step": 12, "beta": 0.9, "amsgrad": False},
        "rng_state": rng.bit_generator.state,
        "epoch": 3,
        "metrics": [{"epoch": e, "lr": 0.01 * 0.95 ** e, "train_loss": 0.7 - e / 10, "train_acc": 0.5 + e / 20,
                     "val_loss": float("nan") if e == 0 else 0.69, "val_acc": 0.5} for e in range(3)],
        "metadata": {"config": {"epochs": 5, "quantum": {"n_qubits": 8, "bases": ["Z"]}, "shots": None},
                     "note": "seed workload"},
        "extras": {"preprocessor": Preprocessor(3, block=2).fit(rng.random((10, 4, 4, 3))).state()},
    }


def _assert_tree_equal(actual, expected, where: str = "") -> None:
    assert isinstance(actual, dict) and list(sorted(actual)) == list(sorted(expected)), where
    for key, value in expected.items():
        if isinstance(value, dict):
            _assert_tree_equal(actual[key], value, f"{where}/{key}")
        elif isinstance(value, np.ndarray):
            got = actual[key]
            assert isinstance(got, np.ndarray), f"{where}/{key}"
            assert (got.dtype, got.shape, got.tobytes()) == (value.dtype, value.shape, value.tobytes()), key
        else:
            assert type(actual[key]) is type(value) and actual[key] == value, f"{where}/{key}"


def test_round_trip_is_exact(tmp_path: Path):
    saved = _contents(0)
    path = save_checkpoint(tmp_path / "run.h5", **saved)
    loaded = load_checkpoint(path)
    for tree in ("weights", "optimizer", "extras"):
        _assert_tree_equal(getattr(loaded, tree), saved[tree], tree)
    assert loaded.epoch == 3 and loaded.metadata == saved["metadata"]
    assert loaded.rng_state == saved["rng_state"]
    assert [list(row) for row in loaded.metrics] == [list(row) for row in saved["metrics"]]
    assert all(type(row["epoch"]) is int for row in loaded.metrics)  # int columns stay int
    np.testing.assert_array_equal([list(row.values()) for row in loaded.metrics],
                                  [list(row.values()) for row in saved["metrics"]])  # NaN == NaN here
    adam = Adam()
    adam.load_state(loaded.optimizer)
    assert adam.step_count == 1 and adam.lr == 0.01
    prep = Preprocessor.from_state(loaded.extras["preprocessor"])
    probe = np.random.default_rng(1).random((2, 4, 4, 3))
    assert np.array_equal(prep.transform(probe), Preprocessor.from_state(saved["extras"]["preprocessor"])
                          .transform(probe))


@pytest.mark.parametrize("bit_generator", ["PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"])
def test_rng_state_restores_the_same_stream(tmp_path: Path, bit_generator: str):
    rng = np.random.Generator(getattr(np.random, bit_generator)(123))
    rng.standard_normal(7)
    rng.integers(0, 10, 3, dtype=np.uint32)  # leaves a buffered 32-bit half in some generators
    save_checkpoint(tmp_path / "c.h5", weights={}, rng_state=rng.bit_generator.state)
    restored = load_checkpoint(tmp_path / "c.h5").generator()
    assert np.array_equal(restored.random(1000), rng.random(1000))
    assert np.array_equal(restored.integers(0, 2**62, 10), rng.integers(0, 2**62, 10))


def test_defaults_and_overwrite(tmp_path: Path):
    path = tmp_path / "c.h5"
    save_checkpoint(path, **_contents(0))
    save_checkpoint(path, weights={"w": np.ones(2)})
    loaded = load_checkpoint(path)
    assert loaded == Checkpoint(weights=loaded.weights) and np.array_equal(loaded.weights["w"], np.ones(2))
    with pytest.raises(CheckpointError, match="this checkpoint holds no RNG state"):
        loaded.generator()


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("failing", ["_write_tree", "_fsync", "os.replace"])
def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch, failing: str):
    path = tmp_path / "run.h5"
    before = _contents(0)
    save_checkpoint(path, **before)
    original = checkpoint_module._write_tree
    calls = []

    def crash(*args, **kwargs):
        calls.append(args)
        if failing == "_write_tree" and len(calls) == 1:  # let the weights be written, fail midway after them
            return original(*args, **kwargs)
        raise RuntimeError("simulated crash")

    target = checkpoint_module.os if failing == "os.replace" else checkpoint_module
    monkeypatch.setattr(target, failing.removeprefix("os."), crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        save_checkpoint(path, **_contents(1))
    assert calls, "the simulated crash never happened"
    monkeypatch.undo()
    assert _files(tmp_path) == ["run.h5"]  # no temporary file left behind
    _assert_tree_equal(load_checkpoint(path).weights, before["weights"])
    with pytest.raises(RuntimeError, match="simulated crash"):  # and a first save that fails leaves nothing
        monkeypatch.setattr(checkpoint_module, "_write_tree", crash)
        save_checkpoint(tmp_path / "new.h5", **before)
    assert _files(tmp_path) == ["run.h5"]


def test_missing_and_damaged_files_are_named(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"checkpoint not found: {tmp_path / 'none.h5'}")):
        load_checkpoint(tmp_path / "none.h5")
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not an HDF5 file at all" * 10)
    with pytest.raises(CheckpointError, match=re.escape(f"cannot read checkpoint {garbage}: ")):
        load_checkpoint(garbage)
    truncated = save_checkpoint(tmp_path / "truncated.h5", **_contents(0))
    data = truncated.read_bytes()
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match=re.escape(f"cannot read checkpoint {truncated}: ")):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as file:
        file["x"] = np.zeros(3)
    with pytest.raises(CheckpointError, match=re.escape(f"{foreign} is an HDF5 file but not a qstore checkpoint")):
        load_checkpoint(foreign)
    future = save_checkpoint(tmp_path / "future.h5", weights={})
    with h5py.File(future, "a") as file:
        file.attrs["version"] = 99
    with pytest.raises(CheckpointError, match="is checkpoint format version 99; this qstore reads 1"):
        load_checkpoint(future)


@pytest.mark.parametrize(("change", "message"), [
    ({"weights": {"w": np.array(["a", "b"])}}, r"weights\['w'\]: arrays must be numeric or bool, got dtype <U1"),
    ({"weights": {"layer": {"w": "text"}}}, r"weights\['layer'\]\['w'\]: expected an array, a number or a dict, "
                                            "got str"),
    ({"optimizer": {"": np.ones(1)}}, r"optimizer\[''\]: names must be non-empty strings"),
    ({"optimizer": {"step": 2**64}}, r"optimizer\['step'\]: the integer 18446744073709551616 does not fit in 64 bits"),
    ({"metrics": [{"loss": 1.0}, {"acc": 0.5}]}, r"metrics row 1 has keys \['acc'\], row 0 has \['loss'\]"),
    ({"metrics": [{"loss": "high"}]}, r"metrics row 0\['loss'\]: expected a number, got 'high'"),
    ({"metadata": {"seen": {1, 2}}}, "metadata cannot be saved as JSON: set is not JSON serialisable"),
    ({"epoch": -1}, "epoch must be a non-negative integer, got -1"),
])
def test_unsupported_contents_are_refused_before_anything_is_written(tmp_path: Path, change, message):
    with pytest.raises(CheckpointError, match=message):
        save_checkpoint(tmp_path / "c.h5", **{"weights": {"w": np.ones(1)}, **change})
    assert _files(tmp_path) == []


def test_docstring_example():
    failures, tried = doctest.testmod(checkpoint_module)
    assert tried > 0 and failures == 0
