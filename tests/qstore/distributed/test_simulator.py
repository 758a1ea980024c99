"""DaskSimulator on real clusters: the in-process engine's results bit for bit, drop-in use, faults, clean exits."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import CancelledError
from pathlib import Path

import numpy as np
import pytest
from distributed import Client, get_task_stream
from hypothesis import given
from hypothesis import strategies as st

import qsim_core as qc
from qsim_core.measurement import simulator_executor
from qstore.distributed import DaskSimulator, chunk_rows, chunk_starts, simulator
from qstore.execution import AsyncQuantumExecutor
from qstore.ml import QuantumLayer, QuantumLayerConfig, TrainConfig, build_model, train
from qstore.ml.sweep import parse_config, run_sweep
from qstore.ml.train import simulator_for_epoch
from tests.conftest import COMPILED
from tests.qstore.distributed.conftest import cli_cluster

OBS = ["Z0", "Z3", "X1", "Y2 Z4", "X0 X5"]
ENGINE = COMPILED[0]


def circuit(n: int = 6) -> qc.Circuit:
    """RY/RZ layers and a CNOT chain; 3n parameters, one shared and scaled to exercise the chain rule."""
    c = qc.Circuit(n)
    for q in range(n):
        c.ry(q, qc.Param(q)).rz(q, qc.Param(n + q, 0.5, 0.1))
    for q in range(n - 1):
        c.cnot(q, q + 1)
    for q in range(n):
        c.ry(q, qc.Param(2 * n + q)).rz(q, qc.Param(0))
    return c


def params(batch: int, n: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-np.pi, np.pi, (batch, 3 * n))


def states(batch: int, n: int = 6, seed: int = 0) -> np.ndarray:
    """Random normalised states, complex128[batch, 2**n]."""
    rng = np.random.default_rng(seed)
    psi = rng.normal(size=(batch, 1 << n)) + 1j * rng.normal(size=(batch, 1 << n))
    return psi / np.linalg.norm(psi, axis=1, keepdims=True)


def assert_identical(got: list, want: list) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        if isinstance(b, np.ndarray):
            assert a.shape == b.shape and a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b


def every_method(sim: qc.Simulator, c: qc.Circuit, theta: np.ndarray, psi0: np.ndarray, empty: bool) -> list:
    """One call of every Simulator method (the same sequence of calls draws the same sampling keys)."""
    values, jacobian = sim.value_and_gradient(c, OBS, theta)
    return [
        sim.expectation(c, OBS, theta), sim.probabilities(c, theta), sim.statevector(c, theta[:3]),
        sim.sample(c, 64, theta), sim.expectation(c, OBS, theta, shots=100), sim.sample(c, 10, theta),
        sim.gradient(c, OBS, theta), values, jacobian, sim.vjp(c, OBS, theta, np.arange(len(OBS))),
        sim.gradient(c, OBS, theta[:4], method="parameter-shift", shots=50),
        sim.gradient(c, OBS, theta[:4], method="spsa", shots=50, samples=2),
        sim.counts(c, 32, theta[:5]), sim.expectation(c, OBS, theta[0]),
        # initial states travel with the rows; the adjoint's third result is d/d psi_0
        sim.expectation(c, OBS, theta, initial_state=psi0),
        *sim.vjp(c, OBS, theta, np.ones((len(theta), len(OBS))), initial_state=psi0, state_gradient=True),
        # the reference backend's einsum reshapes cannot take an empty batch, in process or not
        *([sim.expectation(c, OBS, theta[:0])] if empty else []),
    ]


#: how rows travel: in their tasks, or scattered through the scheduler, or scattered straight to the workers
TRANSFERS = pytest.mark.parametrize(("scatter", "direct"), [(False, None), (True, False), (True, True)],
                                    ids=["rows in tasks", "rows scattered", "rows scattered direct"])


@pytest.mark.parametrize("backend", [*COMPILED, "reference"])
@TRANSFERS
def test_every_method_equals_the_in_process_engine_bit_for_bit(cli, monkeypatch, backend, scatter, direct):
    if scatter:
        monkeypatch.setattr(simulator, "INLINE_BYTES", 0)
    c, theta, psi0 = circuit(), params(23), states(23)
    # a tiny chunk_seconds cuts every measured call into as many tasks as rows allow
    with DaskSimulator(cli.address, backend=backend, seed=5, chunk_seconds=1e-9, direct=direct) as remote:
        assert remote.backend == f"dask:{backend}" and remote.slots == 2
        assert remote.direct is bool(direct)  # by address: Dask's default, through the scheduler
        got = every_method(remote, c, theta, psi0, empty=backend != "reference")
        assert remote.last_run.scattered == scatter
    assert_identical(got, every_method(qc.Simulator(backend=backend, seed=5), c, theta, psi0,
                                       empty=backend != "reference"))


def test_circuits_wider_than_a_block_sample_the_same_streams(cli):
    # block_qubits=4 sends a 6-qubit circuit through the one-row-at-a-time kernels of large states
    c, theta = circuit(), params(9)

    def calls(sim: qc.Simulator) -> list:
        return [sim.sample(c, 40, theta), sim.expectation(c, OBS, theta, shots=30), sim.expectation(c, OBS, theta)]

    with DaskSimulator(cli.address, backend=ENGINE, seed=2, block_qubits=4, chunk_seconds=1e-9) as remote:
        assert_identical(calls(remote), calls(qc.Simulator(backend=ENGINE, seed=2, block_qubits=4, threads=1)))


def test_a_circuit_structure_travels_once_and_chunks_follow_the_measured_cost(cli):
    c, theta = circuit(), params(2000)
    with DaskSimulator(cli.address, backend=ENGINE, chunk_seconds=1e-3) as remote:
        remote.expectation(c, OBS, theta[:32])
        assert remote.last_run.tasks == 1  # not measured yet, and too small to cut
        remote.expectation(c, OBS, theta[:256])
        assert remote.last_run.tasks == 4  # not measured yet: two chunks per worker thread
        remote.expectation(c, OBS, theta)
        rate = remote._cluster_backend.row_seconds[(c.structure_key(), "expectation", 0)]
        remote.expectation(c, OBS, theta)
        assert remote.last_run.rows_per_task == chunk_rows(2000, rate, 2, 1e-3)
        assert remote.last_run.tasks == -(-2000 // remote.last_run.rows_per_task)
        # the same structure under other parameters, or as another object, is not sent again
        remote.probabilities(circuit(), theta[:10])
        assert len(remote._cluster_backend.circuits) == 1


def test_a_call_of_one_task_asks_the_scheduler_nothing_first(cli, monkeypatch):
    c, theta = circuit(), params(200)
    local = qc.Simulator(backend=ENGINE)
    with DaskSimulator(cli.address, backend=ENGINE, chunk_seconds=0.05) as remote:
        asked = []
        for question in ("nthreads", "who_has"):
            answer = getattr(remote.client, question)
            monkeypatch.setattr(remote.client, question,
                                lambda *a, _answer=answer, _question=question, **k: asked.append(_question)
                                or _answer(*a, **k))
        # not measured yet and under 2 x LEARN_ROWS rows: one task on any cluster
        np.testing.assert_array_equal(remote.expectation(c, OBS, theta[:100]), local.expectation(c, OBS, theta[:100]))
        assert asked == [] and remote.last_run.tasks == 1
        # 200 rows of 1 ms, in chunks of 50 ms: 4 tasks, so the worker threads are asked for, and where the
        # circuit's replicas are (it travelled with the first call)
        remote._cluster_backend.row_seconds[(c.structure_key(), "expectation", 0)] = 1e-3
        np.testing.assert_array_equal(remote.expectation(c, OBS, theta), local.expectation(c, OBS, theta))
        assert asked == ["nthreads", "who_has"] and remote.last_run.tasks == 4


@pytest.mark.parametrize(
    ("batch", "row_seconds", "slots", "chunk_seconds", "rows"),
    [
        (1000, None, 2, 0.05, 250),  # not measured yet: two tasks per slot
        (200, None, 2, 0.05, 67),  # not measured yet: tasks of at least LEARN_ROWS rows
        (32, None, 2, 0.05, 32),  # not measured yet and small: one task
        (1_000_000, 2e-6, 2, 0.05, 25_000),  # 2 s of work: 40 tasks of 50 ms
        (1_000_000, 2e-6, 3, 0.05, 23_810),  # 40 tasks round up to 42, whole rounds over 3 slots
        (32, 3e-6, 2, 0.05, 32),  # a training batch: less work than one task carries
        (100_000, 3.7e-6, 2, 0.4, 50_000),  # less work than one task, shared: 2 x 0.185 s
        (100_000, 3.7e-6, 3, 0.4, 33_334),  # 0.37 s over 3 slots
        (30_000, 1.25e-6, 2, 0.4, 30_000),  # 2 x 19 ms: not worth a second task (SHARE_SECONDS)
        (60_000, 1.25e-6, 4, 0.4, 15_000),  # 75 ms: 3 shares of 20 ms or more, rounded up to a round over 4 slots
        (100, 0.03, 2, 0.05, 2),  # 3 s: 60 tasks of 50 ms, 2 rows each
        (5, 1.0, 2, 0.05, 1),  # slow rows: never more tasks than rows
        (0, None, 2, 0.05, 1),
    ],
)
def test_chunk_rows(batch, row_seconds, slots, chunk_seconds, rows):
    assert chunk_rows(batch, row_seconds, slots, chunk_seconds) == rows


@pytest.mark.parametrize(
    ("batch", "row_seconds", "slots", "chunk_seconds", "sizes"),
    [
        # 1.25 s over 1 slot: chunks of 250,000 rows; the first rounds double from an eighth of that (a
        # sixteenth would carry less than SHARE_SECONDS) to a half, the last is a quarter, the middle the rest
        (1_000_000, 1.25e-6, 1, 0.4, [31_250, 62_500, 125_000, 239_584, 239_584, 239_582, 62_500]),
        # over 2 slots: each short round has a chunk per slot
        (1_000_000, 1.25e-6, 2, 0.4, [31_250] * 2 + [62_500] * 2 + [125_000] * 2 + [218_750] * 2 + [62_500] * 2),
        # 1.25 s over 3 slots in chunks of 0.2 s: 9 of 111,112 rows; the ramp from a quarter (an eighth is
        # below SHARE_SECONDS), the middle in whole rounds, the last of them what is left
        (1_000_000, 1.25e-6, 3, 0.2, [27_778] * 3 + [55_556] * 3 + [111_111] * 5 + [111_109] + [27_778] * 3),
        (1_000_000, 1.25e-6, 3, 0.4, [166_667] * 5 + [166_665]),  # 6 chunks, two rounds less 2 rows: no taper
        (100_000, 3.7e-6, 2, 0.4, [50_000] * 2),  # one round of two tasks: left whole
        # one task: the ramp from a sixteenth (23 ms of work), the last a quarter, the middle what is left
        (100_000, 3.7e-6, 1, 0.4, [6_250, 12_500, 25_000, 31_250, 25_000]),
        # one task of 150 ms: a quarter, then a half would leave the middle less than a half: dropped
        (100_000, 1.5e-6, 1, 0.4, [25_000, 50_000, 25_000]),
        (100, None, 2, 0.4, [25, 50, 25]),  # one task (too few rows to learn from) on a cluster of two slots
        (1_000, None, 1, 0.4, [125, 250, 500, 125]),  # cost not known: the ramp starts at a quarter
        (10_000, 1.1e-6, 1, 0.4, [10_000]),  # a quarter of its 11 ms is less than SHARE_SECONDS: no taper
        (10_000, 1.1e-6, 2, 0.002, [1_667] * 5 + [1_665]),  # three rounds, but a quarter chunk is 0.5 ms: none
        (20, 1.0, 1, 4.0, [1, 2, 4, 4, 4, 4, 1]),
        (3, 1.0, 1, 1.0, [1, 1, 1]),  # chunks of one row: a quarter of that is no row, no taper
    ],
)
def test_chunk_starts_taper_the_first_and_last_round_of_scattered_calls(batch, row_seconds, slots, chunk_seconds,
                                                                        sizes):
    starts = chunk_starts(batch, row_seconds, slots, chunk_seconds, taper=True)
    assert np.diff(starts).tolist() == sizes
    assert starts[0] == 0 and starts[-1] == batch
    untapered = chunk_starts(batch, row_seconds, slots, chunk_seconds)
    size = chunk_rows(batch, row_seconds, slots, chunk_seconds)
    assert untapered == [*range(0, batch, size), batch]


@given(batch=st.integers(1, 2_000_000), row_seconds=st.none() | st.floats(1e-8, 1e-2), slots=st.integers(1, 8),
       chunk_seconds=st.floats(1e-3, 2.0), taper=st.booleans(), smallest=st.integers(1, 64))
def test_chunk_starts_cut_any_call_into_ordered_chunks_no_larger_than_a_task(batch, row_seconds, slots,
                                                                             chunk_seconds, taper, smallest):
    size = chunk_rows(batch, row_seconds, slots, chunk_seconds)
    sizes = np.diff(chunk_starts(batch, row_seconds, slots, chunk_seconds, taper=taper))
    assert sizes.sum() == batch and (sizes > 0).all() and sizes.max() <= size
    merged = np.diff(chunk_starts(batch, row_seconds, slots, chunk_seconds, taper=taper, smallest=smallest))
    assert merged.sum() == batch and (merged >= min(smallest, batch)).all()


@pytest.mark.parametrize(("batch", "taper", "smallest", "sizes"), [
    (20, True, 6, [7, 13]),  # tapered 1, 2, 4, 4, 4, 4, 1: a start is kept while both its sides hold 6 rows
    (20, False, 6, [6, 6, 8]),
    (23, False, 6, [6, 6, 11]),
    (5, False, 6, [5]),  # a call of fewer rows is one chunk
    (20, True, 1, [1, 2, 4, 4, 4, 4, 1]),
])
def test_no_chunk_is_smaller_than_the_engines_stable_rows(batch, taper, smallest, sizes):
    # each row's results are then the bits the in-process engine gives the whole call
    starts = chunk_starts(batch, 1.0, 1, 4.0 if taper else 1.0, taper=taper, smallest=smallest)
    assert np.diff(starts).tolist() == sizes


def test_noisy_shots_run_on_the_cluster_with_the_in_process_samples(cli):
    c, theta = circuit(), params(40)
    with DaskSimulator(cli.address, backend=ENGINE, seed=3, noise="aria-1", chunk_seconds=1e-9) as remote:
        got = remote.sample(c, 200, theta)
        assert remote.last_run.method == "sample"  # the error patterns' batches ran on the cluster
    np.testing.assert_array_equal(got, qc.Simulator(backend=ENGINE, seed=3, noise="aria-1").sample(c, 200, theta))


def test_counts_only_executor_protocol(cli):
    c, theta = circuit(), params(6)
    with DaskSimulator(cli.address, backend=ENGINE, seed=3) as remote:
        assert remote(c, theta, 100) == simulator_executor(qc.Simulator(backend=ENGINE, seed=3))(c, theta, 100)
        # the shifted circuits of a parameter-shift gradient measured through it, as through IonQ
        sim = qc.Simulator(backend=ENGINE)
        through = sim.gradient(c, ["Z0", "X1 Y2"], theta[0], method="parameter-shift", shots=64, executor=remote)
    exact = sim.gradient(c, ["Z0", "X1 Y2"], theta[0])
    assert through.shape == exact.shape and np.abs(through - exact).max() < 0.6


def test_the_quantum_layer_and_training_run_on_it_with_the_in_process_results(cli):
    config = QuantumLayerConfig(n_qubits=4, depth=2, entanglement="circular")
    x = np.random.default_rng(1).uniform(-1, 1, (12, 4))
    with DaskSimulator(cli.address, backend=ENGINE, chunk_seconds=1e-9) as remote:
        layers = [QuantumLayer(config, sim, np.random.default_rng(0)) for sim in (qc.Simulator(backend=ENGINE),
                                                                                    remote)]
        outputs = [layer.forward(x) for layer in layers]
        inputs = [layer.backward(np.ones_like(out)) for layer, out in zip(layers, outputs, strict=True)]
    np.testing.assert_array_equal(outputs[1], outputs[0])
    np.testing.assert_array_equal(inputs[1], inputs[0])
    np.testing.assert_array_equal(layers[1].grads["weights"], layers[0].grads["weights"])

    # SPSA on shots: every step samples, so equal weights mean every draw matched the in-process engine's
    train_config = TrainConfig(QuantumLayerConfig(n_qubits=4, depth=1), epochs=1, batch_size=8, gradient="spsa",
                               shots=64, backend=ENGINE, seed=3)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(24, 4)), (rng.random(24) < 0.5).astype(np.float64)
    opened: list[DaskSimulator] = []

    def on_the_cluster(config: TrainConfig, epoch: int) -> qc.Simulator:
        # seeded as simulator_for_epoch seeds the in-process engine
        opened.append(DaskSimulator(cli.address, backend=config.backend, seed=config.seed * 1_000_003 + epoch))
        return opened[-1]

    try:
        remote = train(build_model("quantum", 4, train_config), train_config, x, y, x[:8], y[:8],
                       simulator_factory=on_the_cluster)
    finally:
        for sim in opened:
            sim.close()
    local = train(build_model("quantum", 4, train_config), train_config, x, y, x[:8], y[:8],
                  simulator_factory=simulator_for_epoch)
    assert remote.circuits == local.circuits
    for key, value in local.model.parameters().items():
        np.testing.assert_array_equal(remote.model.parameters()[key], value)


def test_the_async_executor_takes_it_as_its_in_process_target(cli):
    c, theta = circuit(), params(8)
    results = []
    with DaskSimulator(cli.address, backend=ENGINE, seed=4) as remote:
        for sim in (qc.Simulator(backend=ENGINE, seed=4), remote):
            with AsyncQuantumExecutor(sim, max_concurrent=1, circuits_per_job=8) as runner:
                results.append(runner.execute(c, theta, shots=50))
    assert results[1] == results[0]


def test_a_sweep_runs_on_the_same_client_and_leaves_it_open(cli, tmp_path):
    config = parse_config({"data": {"dataset": "digits:3,8", "n_train": 30, "n_val": 10, "features": 4},
                           "fixed": {"epochs": 1, "batch_size": 10, "backend": ENGINE}, "space": {"qubits": [2, 3]}})
    with DaskSimulator(cli.address, backend=ENGINE) as remote:
        result = run_sweep(config, tmp_path / "sweep", client=remote.client, progress=False)
        assert result.ran == 2 and not result.failures
        assert remote.client.status == "running"
        np.testing.assert_array_equal(remote.expectation(circuit(), OBS, params(3)),
                                      qc.Simulator(backend=ENGINE).expectation(circuit(), OBS, params(3)))


def test_a_circuit_whose_every_copy_died_is_sent_again(tmp_path):
    # every worker killed between calls (their nannies start new ones): the circuit kept for later calls is gone
    # from the cluster; the next calls, of one task and of many, scatter it again instead of failing
    c, theta = circuit(), params(2000)
    local = qc.Simulator(backend=ENGINE)
    with cli_cluster(tmp_path, workers=2) as cluster, \
            DaskSimulator(cluster.address, backend=ENGINE, chunk_seconds=1e-3, timeout=10) as remote:
        remote.client.wait_for_workers(2, timeout=60)
        remote.expectation(c, OBS, theta)
        kept = remote._cluster_backend.circuits[c.structure_key()]
        for pid in remote.client.run(os.getpid).values():
            os.kill(pid, signal.SIGKILL)

        def new_workers_without_the_circuit() -> bool:
            workers = set(remote.client.nthreads())
            if len(workers) < 2:
                return False
            try:
                return kept.status != "finished" or not workers & set(remote.client.who_has([kept])[kept.key])
            except CancelledError:  # the scheduler forgot it meanwhile
                return True

        deadline = time.monotonic() + 60
        while not new_workers_without_the_circuit():
            assert time.monotonic() < deadline, "the workers did not come back"
            time.sleep(0.05)
        for rows in (theta, theta[:10]):
            np.testing.assert_array_equal(remote.expectation(c, OBS, rows), local.expectation(c, OBS, rows))
        assert remote.last_run.tasks == 1


@TRANSFERS
def test_a_worker_killed_mid_batch_costs_a_rerun_of_its_chunks_only(tmp_path, monkeypatch, scatter, direct):
    if scatter:
        monkeypatch.setattr(simulator, "INLINE_BYTES", 0)
    # 13 qubits and 1,024 shots: each of 44 chunks of up to 100 rows keeps a worker busy for a while, so that the
    # kill lands inside the batch
    c, theta = circuit(13), params(4000, 13)
    want = qc.Simulator(backend=ENGINE, seed=9).sample(c, 1024, theta)
    with cli_cluster(tmp_path, workers=2) as cluster, \
            DaskSimulator(cluster.address, backend=ENGINE, seed=9, chunk_seconds=1.0, direct=direct,
                          timeout=10) as remote:
        # 40 chunks of 100 rows; scattered, the first and last round (a chunk per worker) tapered: 44
        remote._cluster_backend.row_seconds[(c.structure_key(), "sample", 1024)] = 0.01
        remote.client.wait_for_workers(2, timeout=60)  # both there before the call counts its worker threads
        pids = remote.client.run(os.getpid)
        victim = next(iter(pids.values()))
        started = threading.Event()

        def kill_when_running() -> None:
            while not remote.client.processing() or not any(remote.client.processing().values()):
                time.sleep(0.005)
            time.sleep(0.05)
            started.set()
            os.kill(victim, signal.SIGKILL)

        killer = threading.Thread(target=kill_when_running, daemon=True)
        killer.start()
        got = remote.sample(c, 1024, theta)
        killer.join(timeout=30)
        assert started.is_set()
        np.testing.assert_array_equal(got, want)
        assert remote.last_run.tasks == len(chunk_starts(4000, 0.01, 2, 1.0, taper=remote.last_run.scattered)) - 1
        if scatter:  # the chunks whose rows were on the dead worker were scattered again
            assert 0 < remote.last_run.rerun <= remote.last_run.tasks
        # the nanny restarts the worker: the cluster is whole again and keeps giving the same results
        remote.client.wait_for_workers(2, timeout=60)
        np.testing.assert_array_equal(remote.expectation(c, OBS, theta[:50]),
                                      qc.Simulator(backend=ENGINE).expectation(c, OBS, theta[:50]))


def test_a_worker_that_joins_late_takes_work(tmp_path):
    c, theta = circuit(10), params(3000, 10)
    with cli_cluster(tmp_path, workers=1) as cluster, \
            DaskSimulator(cluster.address, backend=ENGINE, seed=1) as remote:
        assert remote.slots == 1
        local = qc.Simulator(backend=ENGINE, seed=1)
        np.testing.assert_array_equal(remote.sample(c, 256, theta[:50]), local.sample(c, 256, theta[:50]))
        cluster.add_worker("late")
        remote.client.wait_for_workers(2, timeout=60)
        assert remote.slots == 2
        with get_task_stream(client=remote.client) as stream:
            got = remote.sample(c, 256, theta)
        np.testing.assert_array_equal(got, local.sample(c, 256, theta))
        assert remote.last_run.tasks == 4  # not measured yet (the first call was too small): 2 per worker thread
        workers = {task["worker"] for task in stream.data if task["key"].startswith("qsim-sample-")}
        assert len(workers) == 2  # the late worker fetched the circuit from its peer and ran chunks too


def test_a_circuit_copy_dropped_by_the_memory_manager_is_replicated_before_the_next_call(cli):
    c, theta = circuit(10), params(3000, 10)
    with DaskSimulator(cli.address, backend=ENGINE, chunk_seconds=1e-4) as remote:
        remote.expectation(c, OBS, theta)
        shared = remote._cluster_backend.circuits[c.structure_key()]
        # Dask's active memory manager keeps one replica of data that no task waits for
        remote.client.amm.run_once()
        deadline = time.monotonic() + 10
        while len(remote.client.who_has([shared])[shared.key]) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(remote.client.who_has([shared])[shared.key]) == 1
        with get_task_stream(client=remote.client) as stream:
            got = remote.expectation(c, OBS, theta)
        np.testing.assert_array_equal(got, qc.Simulator(backend=ENGINE).expectation(c, OBS, theta))
        assert remote.last_run.tasks > 2
        assert len({task["worker"] for task in stream.data if task["key"].startswith("qsim-expectation-")}) == 2


def test_with_no_address_it_runs_and_stops_a_local_cluster_of_its_own():
    c, theta = circuit(), params(50)
    trim = os.environ.get("MALLOC_TRIM_THRESHOLD_")
    with DaskSimulator(workers=1, backend=ENGINE) as local:
        connection = local._connection
        assert local.slots == 1 and Path(connection._scratch).is_dir()
        assert local.direct  # its own workers are reachable: rows and results skip the scheduler
        # glibc's malloc policy, as in this process: not Dask's MALLOC_TRIM_THRESHOLD_=65536
        assert list(local.client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values()) == [trim]
        assert os.environ.get("MALLOC_TRIM_THRESHOLD_") == trim
        np.testing.assert_array_equal(local.expectation(c, OBS, theta),
                                      qc.Simulator(backend=ENGINE).expectation(c, OBS, theta))
    assert connection.cluster.status.name == "closed" and local.client.status == "closed"
    assert not Path(connection._scratch).exists()


def test_a_given_client_is_used_and_left_open(cli):
    with Client(cli.address) as client:
        with DaskSimulator(client=client, backend=ENGINE) as remote:
            assert remote.client is client
            remote.expectation(circuit(), OBS, params(3))
        assert client.status == "running"


def test_a_bad_address_fails_clearly_and_quickly():
    started = time.monotonic()
    with pytest.raises(OSError, match=r"cannot reach a Dask scheduler at 'tcp://127\.0\.0\.1:9'"):
        DaskSimulator("tcp://127.0.0.1:9", backend=ENGINE, timeout=2)
    assert time.monotonic() - started < 30


def test_a_cluster_that_goes_away_fails_the_call_clearly(tmp_path):
    with cli_cluster(tmp_path, workers=1) as cluster:
        with DaskSimulator(cluster.address, backend=ENGINE, timeout=3) as remote:
            remote.expectation(circuit(), OBS, params(5))
            cluster.kill_scheduler()
            with pytest.raises(ConnectionError, match="lost the Dask scheduler"):
                remote.expectation(circuit(), OBS, params(5))
    # cli_cluster checks on exit that no process of the cluster is left


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chunk_seconds": 0}, "chunk_seconds"),
        ({"chunk_seconds": float("nan")}, "chunk_seconds"),
        ({"retries": -1}, "retries"),
        ({"workers": 2}, "workers="),
        ({"client": "not a client"}, "address or a client"),
    ],
)
def test_bad_settings_are_refused(cli, kwargs, message):
    with pytest.raises(ValueError, match=message):
        DaskSimulator(cli.address, **kwargs)


def test_nothing_is_left_in_shared_memory_or_temp():
    def ours() -> set[str]:
        found = {p.name for p in Path("/dev/shm").glob("*") if "qsim" in p.name or "qstore" in p.name}
        temp = Path(os.environ.get("TMPDIR", "/tmp"))
        return found | {p.name for pattern in ("qstore-dask-*", "dask-scratch-space*") for p in temp.glob(pattern)}

    before = ours()
    with DaskSimulator(workers=1, backend=ENGINE) as local:
        local.expectation(circuit(), OBS, params(100))
    assert ours() <= before
