"""qstore sweep on a local cluster: results per run, resume without repeats, random search, config errors."""

from __future__ import annotations

import json
import math
import tomllib

import pytest
from distributed import Client, LocalCluster, get_task_stream

from qstore.cli import main
from qstore.ml import sweep
from qstore.ml.checkpoint import load_checkpoint

#: small runs: 40 digits, 4 features, one epoch
SMALL = """
[data]
dataset = "digits:3,8"
n_train = 40
n_val = 20
features = 4

[fixed]
epochs = 1
batch_size = 20
shots = 64
"""


def write(tmp_path, text: str, name: str = "sweep.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_grid_writes_one_result_per_run_a_table_and_a_plot(tmp_path, address, capsys):
    config = write(tmp_path, SMALL + '[space]\nqubits = [2, 3]\ngradient = ["adjoint", "parameter-shift"]\n')
    output = tmp_path / "out"
    assert main(["sweep", str(config), "--scheduler", address, "--output", str(output), "--quiet"]) == 0
    report = capsys.readouterr().out
    assert "4 runs (4 trained now, 0 finished before)" in report and "val acc" in report
    files = sorted((output / "runs").glob("*.h5"))
    assert len(files) == 4
    seen = set()
    for path in files:
        checkpoint = load_checkpoint(path)
        settings = checkpoint.metadata["settings"]
        seen.add((settings["qubits"], settings["gradient"]))
        assert checkpoint.epoch == 1 and len(checkpoint.metrics) == 1
        assert checkpoint.metadata["config"]["shots"] == (None if settings["gradient"] == "adjoint" else 64)
        assert 0 <= checkpoint.metadata["val_acc"] <= 1 and checkpoint.metadata["wall_s"] > 0
        assert path.stem in report
    assert seen == {(2, "adjoint"), (2, "parameter-shift"), (3, "adjoint"), (3, "parameter-shift")}
    summary = json.loads((output / "summary.json").read_text())
    accuracies = [row["val_acc"] for row in summary["rows"]]
    assert len(accuracies) == 4 and accuracies == sorted(accuracies, reverse=True)
    assert (output / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_finished_runs_are_not_repeated(tmp_path, address):
    output = tmp_path / "out"
    first = sweep.run_sweep(sweep.parse_config(tomllib.loads(SMALL + "[space]\nseed = [0, 1]\n")), output,
                            scheduler=address, progress=False)
    assert (first.ran, first.skipped) == (2, 0)
    stamps = {path.name: path.stat().st_mtime_ns for path in (output / "runs").glob("*.h5")}
    # the sweep interrupted after those two runs, then started again with a wider grid
    again = sweep.run_sweep(sweep.parse_config(tomllib.loads(SMALL + "[space]\nseed = [0, 1, 2]\n")), output,
                            scheduler=address, progress=False)
    assert (again.ran, again.skipped, len(again.rows)) == (1, 2, 3)
    assert {name: (output / "runs" / name).stat().st_mtime_ns for name in stamps} == stamps
    rows = {row["id"]: row for row in again.rows}
    assert all(rows[row["id"]]["val_acc"] == row["val_acc"] for row in first.rows)


def test_a_failed_run_stops_no_other_and_is_reported(tmp_path, monkeypatch, capsys):
    real = sweep.train_run

    def flaky(settings, arrays):
        if settings["seed"] == 1:
            raise FloatingPointError("the run diverged")
        return real(settings, arrays)

    monkeypatch.setattr(sweep, "train_run", flaky)
    # workers as threads of this process, so they run the patched function
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address="127.0.0.1:0") as cluster:
        config = write(tmp_path, SMALL + "[space]\nseed = [0, 1, 2]\n")
        argv = ["sweep", str(config), "--scheduler", cluster.scheduler_address, "--output", str(tmp_path / "out"),
                "--quiet"]
        assert main(argv) == 1
    captured = capsys.readouterr()
    assert "3 runs" not in captured.out and "2 runs (2 trained now" in captured.out
    assert captured.err.count("\n") == 1 and "1 run(s) failed" in captured.err and "diverged" in captured.err
    assert len(list((tmp_path / "out" / "runs").glob("*.h5"))) == 2


def test_the_largest_runs_start_first(tmp_path):
    space = '[space]\nqubits = [2, 4, 3]\ndepth = [1, 2]\ngradient = ["adjoint", "parameter-shift"]\n'
    # one worker thread: the runs start one by one, in the order Dask was given them
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster) as client, get_task_stream(client) as stream:
        result = sweep.run_sweep(sweep.parse_config(tomllib.loads(SMALL + space)), tmp_path / "out", client=client,
                                 progress=False)
    work = {row["id"]: sweep.work(row["settings"]) for row in result.rows}
    starts = sorted((task["startstops"][0]["start"], task["key"]) for task in stream.data
                    if task["key"].startswith("qstore-run-"))
    started = [work[key.split("-")[2]] for _, key in starts]
    assert result.ran == 12 and len(started) == 12 and len(set(started)) > 6
    assert started == sorted(started, reverse=True)


def test_work_grows_with_every_dimension_of_a_run():
    base = {"qubits": 4, "depth": 1, "epochs": 2, "gradient": "adjoint"}
    for bigger in ({"qubits": 5}, {"depth": 2}, {"epochs": 3}, {"gradient": "parameter-shift"}):
        assert sweep.work({**base, **bigger}) > sweep.work(base)


def test_random_search_draws_reproducibly_within_the_ranges():
    raw = {"search": "random", "runs": 12, "seed": 3, "fixed": {"epochs": 1},
           "space": {"lr": {"log_uniform": [1e-3, 1e-1]}, "depth": [1, 2], "bases": [["Z"], ["X", "Z"]]}}
    runs = sweep.parse_config(raw).settings()
    assert runs == sweep.parse_config(json.loads(json.dumps(raw))).settings()
    assert len(runs) == 12 and all(1e-3 <= run["lr"] <= 1e-1 and run["epochs"] == 1 for run in runs)
    assert {run["depth"] for run in runs} == {1, 2} and {tuple(run["bases"]) for run in runs} == {("Z",), ("X", "Z")}
    assert len({math.log10(run["lr"]) // 1 for run in runs}) == 2  # log-uniform: both decades drawn
    # a list-only space draws duplicates, which run once
    few = sweep.parse_config({"search": "random", "runs": 20, "space": {"depth": [1, 2]}}).settings()
    assert sorted(run["depth"] for run in few) == [1, 2]


def test_json_configs_load_like_toml(tmp_path):
    text = {"data": {"dataset": "digits:3,8"}, "space": {"qubits": [2, 4]}}
    config = sweep.load_config(write(tmp_path, json.dumps(text), "sweep.json"))
    assert [run["qubits"] for run in config.settings()] == [2, 4] and config.data["features"] == 16


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('searh = "grid"\n[space]\nlr = [0.1]', "searh: unknown key"),
        ("[space]\nqbits = [2]", "space.qbits: unknown key"),
        ("[fixed]\nepoch = 2\n[space]\nlr = [0.1]", "fixed.epoch: unknown key"),
        ("[data]\nfeature = 2\n[space]\nlr = [0.1]", "data.feature: unknown key"),
        ("[space]\nqubits = [2, 30]", "space.qubits[1]: must be an integer in 1..24, got 30"),
        ('[space]\nentanglement = ["ring"]', "space.entanglement[0]: must be one of linear, circular, full"),
        ('[space]\ngradient = ["finite-difference"]', "space.gradient[0]"),
        ("[space]\nlr = [-0.1]", "space.lr[0]: must be a number in (0, inf)"),
        ("[space]\nlr = []", "space.lr: must be a non-empty list"),
        ("[space]\nlr = {log_uniform = [0.001, 0.1]}", "space.lr: a grid needs a list of values"),
        ('search = "random"\nruns = 3\n[space]\ndepth = {uniform = [1, 3]}', "space.depth: a range is one of"),
        ('search = "random"\nruns = 3\n[space]\nlr = {uniform = [0.1, 0.01]}', "space.lr.uniform: must be [low, high]"),
        ('search = "random"\n[space]\nlr = [0.1]', "runs: random search needs the number of runs"),
        ("runs = 3\n[space]\nlr = [0.1]", "runs: applies to search"),
        ("seed = 3\n[space]\nlr = [0.1]", "seed: applies to search"),
        ("[fixed]\nlr = 0.1\n[space]\nlr = [0.1]", "space.lr: also set in fixed"),
        ("[fixed]\nshots = 0\n[space]\nlr = [0.1]", "fixed.shots: must be an integer >= 1 or none, got 0"),
        ('[fixed]\nbases = ["Z", "W"]\n[space]\nlr = [0.1]', "fixed.bases: must be a non-empty list"),
        ("[data]\nn_train = 10", "space: needs at least one swept setting"),
        ('[fixed]\nbackend = "gpu"\n[space]\nlr = [0.1]', "fixed.backend: must be one of auto"),
        ('[data]\ndataset = "imagenet"\n[space]\nlr = [0.1]', "data.dataset: unknown dataset 'imagenet'"),
        ('[data]\ndataset = "digits:3,8"\nn_train = 5000\n[space]\nlr = [0.1]', "data.dataset:"),
        ("[space\nlr = [0.1]", "is not valid TOML"),
    ],
)
def test_bad_configs_are_rejected_before_anything_runs_naming_the_key(tmp_path, capsys, text, message):
    output = tmp_path / "out"
    # no --scheduler: a config that got past the checks would start a local cluster (and fail this test's time)
    assert main(["sweep", str(write(tmp_path, text)), "--output", str(output), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qstore sweep: ") and err.count("\n") == 1 and message in err
    assert not (output / "runs").exists()


@pytest.mark.parametrize(("name", "message"), [("missing.toml", "cannot read"), ("sweep.yaml", ".json or .toml")])
def test_unreadable_config_files_are_one_line(tmp_path, capsys, name, message):
    if name.endswith(".yaml"):
        write(tmp_path, "space: {}", name)
    assert main(["sweep", str(tmp_path / name), "--output", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
