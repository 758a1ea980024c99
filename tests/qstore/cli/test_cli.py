"""The qstore command end to end at small sizes: outputs, summary, resume, and clean errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qstore.cli import main
from qstore.ml.checkpoint import load_checkpoint

SMALL = ["train", "--dataset", "digits:3,8", "--qubits", "4", "--features", "6", "--epochs", "2", "--quiet"]


def test_train_writes_checkpoints_plot_and_summary(tmp_path, capsys):
    summary_path = tmp_path / "summary.json"
    assert main(SMALL + ["--output", str(tmp_path), "--json", str(summary_path)]) == 0
    report = capsys.readouterr().out
    assert "quantum model" in report and "classical baseline" in report and "circuits executed" in report
    summary = json.loads(summary_path.read_text())
    assert set(summary) == {"val_acc", "train_acc", "baseline_val_acc", "wall_s", "circuits", "seconds"}
    assert set(summary["seconds"]) == {"data", "simulation", "classical"}
    assert summary["circuits"] > 0 and 0 <= summary["val_acc"] <= 1
    checkpoint = load_checkpoint(tmp_path / "quantum.h5")
    assert checkpoint.epoch == 2 and len(checkpoint.metrics) == 2
    assert checkpoint.metadata["config"]["quantum"]["n_qubits"] == 4
    assert (tmp_path / "classical.h5").exists()
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_continues_from_the_checkpoint(tmp_path):
    assert main(SMALL + ["--output", str(tmp_path), "--json", str(tmp_path / "a.json")]) == 0
    weights = load_checkpoint(tmp_path / "quantum.h5").weights
    # a finished run resumed does no more epochs and reports the same result
    assert main(SMALL + ["--output", str(tmp_path), "--json", str(tmp_path / "b.json"), "--resume"]) == 0
    again = load_checkpoint(tmp_path / "quantum.h5").weights
    for key, value in weights.items():
        np.testing.assert_array_equal(again[key], value)
    first, second = (json.loads((tmp_path / name).read_text()) for name in ("a.json", "b.json"))
    assert second["val_acc"] == first["val_acc"] and second["circuits"] == 0


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path, capsys):
    assert main(SMALL + ["--output", str(tmp_path)]) == 0
    assert main(SMALL + ["--output", str(tmp_path), "--resume", "--lr", "0.2"]) == 2
    assert "different settings" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--dataset", "petimages:/no/such/folder"], "/no/such/folder"),
        (["train", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["train", "--dataset", "digits:3,3"], "3"),
        (["train", "--dataset", "digits:3,8", "--n-train", "5000"], "5000"),
        (["train", "--epochs", "0"], "epochs must be an integer >= 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(tmp_path, capsys, argv, message):
    assert main(argv + ["--quiet", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unknown_options_exit_2_with_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--colour", "blue"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --colour" in capsys.readouterr().err
