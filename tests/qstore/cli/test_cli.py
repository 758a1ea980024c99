"""The qstore command end to end at small sizes: outputs, summary, resume, and clean errors."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qstore.cli import main, parser
from qstore.cli import train as train_cli
from qstore.ml import TrainResult
from qstore.ml.checkpoint import load_checkpoint

SMALL = ["train", "--dataset", "digits:3,8", "--qubits", "4", "--features", "6", "--epochs", "2", "--quiet"]
#: ``qstore train`` with the reference's settings (every other one at its default)
REFERENCE = ["train", "--grad", "parameter-shift", "--shots", "1024"]


def test_train_writes_checkpoints_plot_and_summary(tmp_path, capsys):
    summary_path = tmp_path / "summary.json"
    assert main(SMALL + ["--output", str(tmp_path), "--json", str(summary_path)]) == 0
    report = capsys.readouterr().out
    assert "quantum model" in report and "classical baseline" in report and "circuits executed" in report
    summary = json.loads(summary_path.read_text())
    assert set(summary) == {"val_acc", "train_acc", "baseline_val_acc", "wall_s", "circuits", "seconds", "skipped",
                            "noise"}
    assert set(summary["seconds"]) == {"data", "simulation", "classical"}
    assert summary["skipped"] == []
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


def _jpeg_bytes(rng: np.random.Generator) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture
def pet_folder(tmp_path: Path) -> Path:
    """PetImages-like: per class 5 good JPEGs, a zero-byte, a text and a truncated ``.jpg``; Dog one more empty."""
    rng = np.random.default_rng(0)
    root = tmp_path / "PetImages"
    for name in ("Cat", "Dog"):
        folder = root / name
        folder.mkdir(parents=True)
        for k in range(5):
            (folder / f"{k:03d}.jpg").write_bytes(_jpeg_bytes(rng))
        (folder / "empty.jpg").write_bytes(b"")
        (folder / "not_image.jpg").write_text("<html>404</html>")
        (folder / "truncated.jpg").write_bytes(_jpeg_bytes(rng)[:700])
    (root / "Dog" / "zero.jpg").touch()
    return root


def test_skipped_files_are_named_on_the_console_and_all_listed_in_the_summary(pet_folder, tmp_path, capsys):
    summary_path = tmp_path / "summary.json"
    # 8 + 2 of the 10 good images: seed 8 draws every unreadable file before the last good one of its class
    argv = ["train", "--dataset", f"petimages:{pet_folder}", "--n-train", "8", "--n-val", "2", "--seed", "8",
            "--qubits", "4", "--features", "4", "--epochs", "1", "--quiet"]
    assert main(argv + ["--output", str(tmp_path / "run"), "--json", str(summary_path)]) == 0
    bad = [str(Path(cls, name)) for cls in ("Cat", "Dog") for name in ("empty.jpg", "not_image.jpg", "truncated.jpg")]
    bad = sorted([*bad, str(Path("Dog", "zero.jpg"))])  # relative to the dataset folder, in path order
    assert json.loads(summary_path.read_text())["skipped"] == bad
    data_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("data:"))
    assert data_line.endswith(f", 8 train / 2 validation, 7 unreadable file(s) skipped: {', '.join(bad[:5])} "
                              "and 2 more")


@pytest.mark.parametrize(("count", "note"), [
    (0, ""),
    (1, ", 1 unreadable file(s) skipped: f0"),
    (5, ", 5 unreadable file(s) skipped: f0, f1, f2, f3, f4"),
    (6, ", 6 unreadable file(s) skipped: f0, f1, f2, f3, f4 and 1 more"),
])
def test_the_console_names_the_first_five_skipped_files(count, note):
    assert train_cli._skipped_note([f"f{k}" for k in range(count)]) == note


@pytest.mark.parametrize(("argv", "reference"), [
    (["reproduce"], True),
    (["reproduce", "--data", "PetImages"], True),
    (["reproduce", "--grad", "adjoint"], False),  # other work: exact gradients
    (["reproduce", "--epochs", "1"], False),
    (REFERENCE, True),
    (REFERENCE + ["--dataset", "petimages:PetImages", "--n-train", "800", "--n-val", "200"], True),
    (REFERENCE + ["--lr", "0.1", "--lr-decay", "0.5", "--seed", "3", "--backend", "reference"], True),  # same work
    (["train"], False),  # exact adjoint gradients
    (REFERENCE + ["--dataset", "digits:3,8"], False),
    (REFERENCE + ["--n-train", "100"], False),
    (REFERENCE + ["--n-val", "100"], False),
    (REFERENCE + ["--epochs", "4"], False),
    (REFERENCE + ["--batch-size", "16"], False),
    (REFERENCE + ["--features", "8"], False),
    (REFERENCE + ["--shots", "512"], False),
    (REFERENCE + ["--qubits", "6"], False),
    (REFERENCE + ["--depth", "3"], False),
    (REFERENCE + ["--entanglement", "linear"], False),
    (REFERENCE + ["--reupload"], False),
    (REFERENCE + ["--bases", "Z", "X"], False),
    (["train", "--grad", "spsa", "--shots", "1024"], False),
])
def test_the_reference_workload_is_the_reference_settings(argv, reference):
    args = parser().parse_args(argv)
    assert train_cli.is_reference_workload(*train_cli.configs(args)) is reference


@pytest.mark.parametrize(("argv", "printed"), [
    (["reproduce"], True),
    (["reproduce", "--grad", "adjoint", "--epochs", "1"], False),
    (REFERENCE, True),
    (SMALL, False),
    (["train", "--epochs", "1"], False),
])
def test_the_reference_comparison_is_printed_only_for_the_reference_workload(tmp_path, capsys, monkeypatch, argv,
                                                                             printed):
    load = train_cli.load_dataset
    # the settings stay the reference's; only the images loaded are fewer, to keep the test fast
    monkeypatch.setattr(train_cli, "load_dataset", lambda data: load(dataclasses.replace(data, n_train=24, n_val=8)))
    assert main(argv + ["--quiet", "--output", str(tmp_path)]) == 0
    assert ("reference run on IonQ's cloud simulator" in capsys.readouterr().out) is printed


def test_a_resumed_reference_run_is_not_compared_with_the_reference(tmp_path, capsys, monkeypatch):
    load = train_cli.load_dataset
    monkeypatch.setattr(train_cli, "load_dataset", lambda data: load(dataclasses.replace(data, n_train=24, n_val=8)))
    assert main(["reproduce", "--quiet", "--output", str(tmp_path)]) == 0
    assert "x faster" in capsys.readouterr().out
    # resumed after its last epoch: the wall time is a fraction of the run's, so no speed-up is claimed
    assert main(["reproduce", "--quiet", "--output", str(tmp_path), "--resume"]) == 0
    report = capsys.readouterr().out
    assert "x faster" not in report and "resumed from checkpoints" in report


def test_the_curves_have_integer_epoch_ticks():
    history = [{"epoch": e, "lr": 0.05, "train_loss": 0.7 / e, "train_acc": 0.5 + e / 10, "val_loss": 0.8 / e,
                "val_acc": 0.5 + e / 20} for e in (1, 2)]
    results = {kind: TrainResult(None, history, 0, 0.0, 0.0) for kind in ("quantum", "classical")}
    figure = train_cli.curves_figure(results)
    figure.canvas.draw()
    for axis in figure.axes:
        labels = [label.get_text() for label in axis.get_xticklabels()]
        assert labels and all(re.fullmatch(r"\d+", label) for label in labels), labels


def test_bars_never_share_a_line_with_the_report_or_a_warning(tmp_path, monkeypatch):
    train = train_cli.train

    def warning_mid_training(*args, on_step, **kwargs):
        def step(done, total):
            on_step(done, total)
            if done == 2:
                warnings.warn("half-way", UserWarning, stacklevel=1)

        return train(*args, on_step=step, **kwargs)

    monkeypatch.setattr(train_cli, "train", warning_mid_training)
    terminal = io.StringIO()  # stdout and stderr interleaved as on a terminal
    with contextlib.redirect_stdout(terminal), contextlib.redirect_stderr(terminal):
        assert main([arg for arg in SMALL if arg != "--quiet"] + ["--output", str(tmp_path)]) == 0
    text = terminal.getvalue()
    first_bar, table = text.index("batch"), text.index("\nquantum model\n")
    assert text.index("data:") < text.index("model:") < first_bar < table
    assert "batch" not in text[table:]  # the bars are gone before the tables
    assert text[:table].endswith("\r") and not text[:table].split("\r")[-2].strip()  # the last bar was cleared
    warning = [part for part in text.split("\r") if "UserWarning: half-way" in part]
    assert warning and all(part.startswith(__file__) for part in warning)  # on a line of its own


def test_train_under_noise_reports_the_accuracy_cost_beside_the_noiseless_run(tmp_path, capsys):
    assert main(SMALL + ["--output", str(tmp_path / "plain"), "--json", str(tmp_path / "plain.json")]) == 0
    noisy = tmp_path / "noisy"
    assert main(SMALL + ["--noise", "aria-1", "--output", str(noisy), "--json", str(tmp_path / "noisy.json")]) == 0
    report = capsys.readouterr().out
    assert "gradients adjoint, under IonQ's aria-1 noise model" in report  # exact, over density matrices
    assert "quantum model under aria-1 noise" in report and "accuracy cost of noise" in report
    plain, summary = (json.loads((tmp_path / name).read_text()) for name in ("plain.json", "noisy.json"))
    assert summary["noise"] == "aria-1" and plain["noise"] is None
    assert summary["noise_cost"] == pytest.approx(summary["noiseless_val_acc"] - summary["val_acc"])
    # the noiseless run is the plain run on the same data
    assert summary["noiseless_val_acc"] == pytest.approx(plain["val_acc"], abs=1e-12)
    assert summary["baseline_val_acc"] == plain["baseline_val_acc"]
    assert load_checkpoint(noisy / "quantum.h5").metadata["config"]["noise"] == "aria-1"
    assert load_checkpoint(noisy / "noiseless.h5").metadata["config"]["noise"] is None
    noisy_weights = load_checkpoint(noisy / "quantum.h5").weights
    noiseless_weights = load_checkpoint(noisy / "noiseless.h5").weights
    assert any(not np.allclose(noisy_weights[k], noiseless_weights[k]) for k in noisy_weights)  # noise changed it


def test_an_unknown_noise_model_is_refused_with_the_known_ones(capsys):
    with pytest.raises(SystemExit):
        main(SMALL + ["--noise", "harmony"])
    assert "aria-1" in capsys.readouterr().err


def test_the_command_loads_the_ionq_client_only_for_the_commands_that_talk_to_ionq():
    # requests and the client are some 70 ms of every command's start-up (a twentieth of a warm `qstore reproduce`)
    probe = ("import sys; from qstore.cli import parser; parser().parse_args(['reproduce']); "
             "print(sorted(m for m in ('qstore.ionq.client', 'requests') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
