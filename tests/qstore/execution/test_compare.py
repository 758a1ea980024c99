"""``qstore compare`` end to end at small sizes (no injected latency), its agreement test, and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qstore.cli import main
from qstore.execution.compare import tvd_against_noise, tvd_between
from qstore.ionq.server import ServerConfig, running_server
from qstore.ionq.server.latency import LatencyProfile

SMALL = ["compare", "--circuits", "6", "--shots", "256", "--circuits-per-job", "4"]


def test_compare_against_a_local_server_prints_tables_and_writes_json_and_png(tmp_path, capsys):
    assert main(SMALL + ["--profile", "none", "--output", str(tmp_path)]) == 0
    report = capsys.readouterr().out
    assert "6 seed circuits (8 qubits" in report and "256 shots each; jobs of up to 4 circuits" in report
    for text in ("circuits/s", "p50 ms", "serialization", "download", "TVD mean", "shot noise",
                 "local server (none profile)", "less wall time"):
        assert text in report
    assert report.count("consistent with shot noise") == 3  # each run, and the two histograms against each other
    summary = json.loads((tmp_path / "compare.json").read_text())
    assert summary["settings"]["profile"] == "none" and summary["settings"]["circuits"] == 6
    local, remote = summary["runs"]
    assert local["label"] == "in-process" and remote["target"].endswith("/v0.4 simulator")
    for run in (local, remote):
        assert run["circuits"] == 6 and run["jobs"] == 2 and len(run["job_timings"]) == 2
        assert run["agreement"]["consistent"] and len(run["agreement"]["tvd"]) == 6
        assert set(run["phase_means_s"]) == {"serialization", "network", "queue", "simulation", "download", "total"}
        assert 0 < run["latency_s"]["p50"] <= run["latency_s"]["p95"]
    assert all(t["job_id"] for t in remote["job_timings"]) and remote["phase_means_s"]["serialization"] > 0
    assert (tmp_path / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_against_an_existing_server(tmp_path, capsys, monkeypatch):
    config = ServerConfig(db=tmp_path / "jobs.sqlite", api_keys=frozenset({"k1"}), profile=LatencyProfile.load("none"))
    key_file, wrong_file = tmp_path / "key.txt", tmp_path / "wrong.txt"
    key_file.write_text("k1\n")  # as an editor saves it: the newline is not part of the key
    wrong_file.write_text("wrong\n")
    monkeypatch.delenv("IONQ_API_KEY", raising=False)
    with running_server(config) as root:
        out = ["--target", root, "--output", str(tmp_path / "out")]
        assert main(SMALL + out + ["--api-key-file", str(key_file)]) == 0
        assert main(SMALL + out + ["--api-key-file", str(wrong_file)]) == 2
        monkeypatch.setenv("IONQ_API_KEY", "k1")  # or from the environment
        assert main(SMALL + out) == 0
    out, err = capsys.readouterr()
    assert f"{root}  " in out  # the remote row is labelled with its URL
    assert err.count("\n") == 1 and err.startswith("qstore compare: HTTP 401") and "missing or unknown API key" in err


def test_the_key_never_goes_on_the_command_line(tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit) as exit_status:
        main(SMALL + ["--target", "http://127.0.0.1:1", "--api-key", "sekrit-value"])
    err = capsys.readouterr().err
    assert exit_status.value.code == 2 and "--api-key was removed" in err and "--api-key-file" in err
    assert "sekrit-value" not in err
    bad = tmp_path / "key.txt"
    bad.write_text("sekrit value\n")  # a space inside: not a key
    assert main(SMALL + ["--target", "http://127.0.0.1:1", "--api-key-file", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "character 7 of 12 is whitespace" in err and "sekrit" not in err
    assert main(SMALL + ["--target", "http://127.0.0.1:1", "--api-key-file", str(tmp_path / "missing.txt")]) == 2
    assert "missing.txt" in capsys.readouterr().err
    bad.write_text("k1")
    assert main(SMALL + ["--api-key-file", str(bad), "--output", str(tmp_path)]) == 2  # the local target makes its own
    assert "applies to a remote target only" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--target", "ionq"], "needs an API key: set IONQ_API_KEY or pass --api-key-file"),
        (["--profile", "slow-ish"], "unknown latency profile 'slow-ish'"),
        (["--target", "http://127.0.0.1:1", "--profile", "none"], "applies to the local server only"),
        (["--circuits", "0"], "circuits must be a positive integer, got 0"),
        (["--shots", "0", "--profile", "none"], "shots must be a positive integer, got 0"),
        (["--max-concurrent", "0", "--profile", "none"], "max_concurrent must be an integer >= 1, got 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.delenv("IONQ_API_KEY", raising=False)
    assert main(["compare", "--output", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("qstore compare: ") and message in err
    assert not (tmp_path / "compare.json").exists()


def test_agreement_separates_shot_noise_from_a_wrong_distribution():
    rng = np.random.default_rng(0)
    p = np.array([[0.5, 0.25, 0.125, 0.125]] * 5)
    sampled = [dict(enumerate(rng.multinomial(1000, row).tolist())) for row in p]
    fair = tvd_against_noise(sampled, p, 1000, rng)
    assert fair.consistent and abs(fair.z) < 4 and len(fair.tvd) == 5
    assert np.allclose(fair.expected, fair.expected[0], rtol=0.1)  # same distribution, same noise level
    skewed = tvd_against_noise([{0: 600, 1: 200, 2: 100, 3: 100}] * 5, p, 1000, rng)
    assert skewed.tvd == pytest.approx([0.1] * 5) and not skewed.consistent and skewed.z > 4


def test_compare_with_a_noise_model_runs_both_sides_noisy_and_measures_their_distance(tmp_path, capsys):
    assert main(SMALL + ["--profile", "none", "--noise", "aria-1", "--output", str(tmp_path)]) == 0
    report = capsys.readouterr().out
    assert "noise model aria-1" in report and "exact aria-1 noisy probabilities" in report
    assert "in-process vs remote" in report and report.count("consistent with shot noise") == 3
    summary = json.loads((tmp_path / "compare.json").read_text())
    assert summary["settings"]["noise"] == "aria-1"
    distance = summary["histogram_distance"]
    assert distance["consistent"] and len(distance["tvd"]) == 6
    assert distance["tvd_max"] == max(distance["tvd"]) and 0 < distance["tvd_mean"] <= distance["tvd_max"]
    assert all(run["agreement"]["consistent"] for run in summary["runs"])  # both fit the noisy distribution


def test_compare_refuses_an_unknown_noise_model(capsys):
    with pytest.raises(SystemExit):
        main(SMALL + ["--noise", "harmony"])
    assert "invalid choice: 'harmony'" in capsys.readouterr().err


def test_histogram_distance_separates_shot_noise_from_different_distributions():
    rng = np.random.default_rng(3)
    p = np.array([[0.5, 0.2, 0.2, 0.1]] * 5)

    def draw(q) -> list[dict[int, int]]:
        return [dict(enumerate(rng.multinomial(1000, q).tolist())) for _ in range(5)]

    same = tvd_between(draw(p[0]), draw(p[0]), p, 1000, rng)
    assert same.consistent and all(t < 0.1 for t in same.tvd)
    assert np.allclose(same.expected, same.expected[0], rtol=0.1)
    other = tvd_between(draw(p[0]), draw(np.array([0.4, 0.3, 0.2, 0.1])), p, 1000, rng)
    assert not other.consistent and other.z > 4
    exact = tvd_between([{0: 3, 1: 1}], [{1: 2, 2: 2}], p[:1], 4, rng)
    assert exact.tvd == [0.5 * (3 + 1 + 2) / 4]  # by hand: |3-0| + |1-2| + |0-2|, halved, over 4 shots
