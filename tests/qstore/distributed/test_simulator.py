"""DaskSimulator on a local two-worker cluster: the in-process engine's results bit for bit, drop-in use, faults."""

from __future__ import annotations

import collections
import errno
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from distributed import Client

import qsim_core as qc
from qsim_core.measurement import simulator_executor
from qstore.distributed import DaskSimulator, chunk_size, sharedmem, simulator, standby
from qstore.execution.executor import AsyncQuantumExecutor
from qstore.ml.layers import QuantumLayer, QuantumLayerConfig
from qstore.ml.train import TrainConfig, build_model, simulator_for_epoch, train
from tests.conftest import COMPILED

OBS = ["Z0", "Z3", "X1", "Y2 Z4", "X0 X5"]


@pytest.fixture(scope="module")
def shared(address):
    """One executor (numba or cython, as the suite tests) for tests that do not change its settings."""
    with DaskSimulator(address, backend=COMPILED[0], seed=11, chunk_rows=7) as executor:
        yield executor


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


def assert_identical(got: list, want: list) -> None:
    for a, b in zip(got, want, strict=True):
        if isinstance(b, np.ndarray):
            assert a.shape == b.shape and a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b


def states(batch: int, n: int = 6, seed: int = 0) -> np.ndarray:
    """Random normalised states, complex128[batch, 2**n]."""
    rng = np.random.default_rng(seed)
    psi = rng.normal(size=(batch, 1 << n)) + 1j * rng.normal(size=(batch, 1 << n))
    return psi / np.linalg.norm(psi, axis=1, keepdims=True)


@pytest.mark.parametrize(("backend", "transport"), [*((engine, transport) for engine in COMPILED
                                                      for transport in ("shared memory", "messages")),
                                                    ("reference", "messages")])
@pytest.mark.parametrize("chunk_rows", [1, 7, None])
def test_every_result_equals_the_in_process_engine_bit_for_bit(address, backend,
                                                               transport, chunk_rows):
    c, theta, psi0 = circuit(), params(23), states(23)

    def calls(sim: qc.Simulator) -> list:  # the same sequence of calls draws the same keys
        return [
            sim.expectation(c, OBS, theta), sim.probabilities(c, theta), sim.statevector(c, theta[:3]),
            sim.sample(c, 64, theta), sim.expectation(c, OBS, theta, shots=100), sim.sample(c, 10, theta),
            sim.gradient(c, OBS, theta), sim.vjp(c, OBS, theta, np.arange(len(OBS))),
            sim.gradient(c, OBS, theta[:4], method="parameter-shift", shots=50),
            sim.gradient(c, OBS, theta[:4], method="spsa", shots=50, samples=2),
            sim.counts(c, 32, theta[:5]), sim.expectation(c, OBS, theta[0]),
            # initial states travel with the rows; the adjoint's third result is d/d psi_0
            sim.expectation(c, OBS, theta, initial_state=psi0),
            *sim.vjp(c, OBS, theta, np.ones((23, len(OBS))), initial_state=psi0, state_gradient=True),
            # the reference backend's einsum reshapes cannot take an empty batch, in process or not
            *([] if backend == "reference" else [sim.expectation(c, OBS, theta[:0])]),
        ]

    with DaskSimulator(address, backend=backend, seed=5, chunk_rows=chunk_rows,
                      shared_memory=None if transport == "shared memory" else False) as remote:
        assert remote.backend == f"dask:{backend}"
        assert_identical(calls(remote), calls(qc.Simulator(backend=backend, seed=5)))
        assert remote.last_run.transport == transport


@pytest.mark.parametrize("shared_memory", [None, False])
def test_an_older_executor_still_finishes_its_calls_beside_a_newer_one(address,
                                                                        shared_memory):
    # Each Client runs its own event loop, and Dask's waits default to the newest client's: a call of the
    # older executor that waited there heard of its chunks only when that loop happened to wake up (5 s
    # here, never in a benchmark that hung).
    c, theta = circuit(), params(30)
    want = qc.Simulator(backend=COMPILED[0]).expectation(c, OBS, theta)
    with DaskSimulator(address, backend=COMPILED[0], chunk_rows=4, shared_memory=shared_memory) as older, \
            DaskSimulator(address, backend=COMPILED[0], chunk_rows=4, shared_memory=shared_memory) as newer:
        results: list[np.ndarray] = []
        for executor in (older, newer, older):
            call = threading.Thread(target=lambda e=executor: results.append(e.expectation(c, OBS, theta)),
                                    daemon=True)
            call.start()
            call.join(timeout=3)  # a call of 30 rows takes 40-300 ms
            assert not call.is_alive(), "the call waits on another client's event loop"
        assert older.last_run.transport == ("messages" if shared_memory is False else "shared memory")
    for got in results:
        np.testing.assert_array_equal(got, want)


def test_with_no_address_it_runs_and_stops_a_local_cluster_of_its_own():
    c, theta = circuit(), params(50)
    with DaskSimulator(workers=1, backend=COMPILED[0]) as local:
        cluster = local._cluster
        assert local.slots == 1  # from the cluster's own list of its workers
        np.testing.assert_array_equal(local.expectation(c, OBS, theta),
                                      qc.Simulator(backend=COMPILED[0]).expectation(c, OBS, theta))
    assert cluster.status.name == "closed" and local.client.status == "closed"


def test_circuits_wider_than_a_block_sample_the_same_streams(address):
    # block_qubits=4 sends a 6-qubit circuit through the one-row-at-a-time kernels of large states
    c, theta = circuit(), params(9)

    def calls(sim: qc.Simulator) -> list:
        return [sim.sample(c, 40, theta), sim.expectation(c, OBS, theta, shots=30), sim.expectation(c, OBS, theta)]

    with DaskSimulator(address, backend=COMPILED[0], seed=2, block_qubits=4, chunk_rows=4) as remote:
        assert_identical(calls(remote), calls(qc.Simulator(backend=COMPILED[0], seed=2, block_qubits=4, threads=1)))


def test_each_worker_gets_each_circuit_structure_once(shared):
    theta = params(40)
    for _ in range(3):  # new Circuit objects of one structure
        shared.expectation(circuit(), ["Z0"], theta)
        shared.sample(circuit(), 5, theta)
    shared.expectation(circuit(5), ["Z0"], params(40, 5))

    def installed() -> list[str]:
        from qstore.distributed.simulator import _installed

        return list(_installed)

    # one copy per structure, not per call or per Circuit object, installed on every worker (which compiles it
    # once, on first use); chunk tasks carry only its name
    names = set(shared._cluster_backend.circuits.values())
    assert len(names) == 2
    assert all(names <= set(held) for held in shared.client.run(installed).values())


def test_last_run_reports_the_chunking(shared):
    shared.expectation(circuit(), OBS, params(30))
    stats = shared.last_run
    assert (stats.method, stats.rows, stats.tasks, stats.chunks, stats.rows_per_chunk) == ("expectation", 30, 2, 5, 7)
    assert stats.redone == 0 and stats.transport == "shared memory"
    assert stats.seconds > 0 and stats.engine_seconds > 0 and shared.task_overhead > 0 and shared.slots == 2


def test_through_shared_memory_a_task_per_slot_shares_the_rows_out_in_shrinking_blocks(address):
    c, theta = circuit(8), params(6000, 8)
    with DaskSimulator(address, backend=COMPILED[0]) as remote:
        for _ in range(2):  # the first call measures the cost per row, which sizes the blocks of the next
            np.testing.assert_array_equal(remote.expectation(c, OBS, theta),
                                          qc.Simulator(backend=COMPILED[0]).expectation(c, OBS, theta))
            stats = remote.last_run
            assert stats.transport == "shared memory" and stats.redone == 0
            assert stats.tasks <= remote.slots and stats.tasks < stats.chunks <= 6000
            assert stats.rows_per_chunk <= -(-6000 // (2 * stats.tasks))  # the first blocks are the largest


@pytest.mark.parametrize("shared_memory", [None, False])
def test_a_small_first_call_does_not_shred_the_next_large_batch(address, shared_memory):
    # a warm-up call's time is mostly one-off cost; learnt as a per-row rate it once cut 20,000 rows into
    # 6,667 tasks of 3 rows (30 s instead of 0.5 s)
    with DaskSimulator(address, backend=COMPILED[0], seed=3, shared_memory=shared_memory) as executor:
        executor.sample(circuit(4), 16, params(5, 4, seed=1))
        executor.sample(circuit(4), 16, params(4000, 4, seed=2))
        stats = executor.last_run
        assert stats.tasks <= 2 * executor.slots and stats.chunks <= 16 * executor.slots


def test_counts_only_executor_protocol(address):
    c, theta = circuit(), params(6)
    with DaskSimulator(address, backend=COMPILED[0], seed=3, chunk_rows=2) as remote:
        assert remote(c, theta, 100) == simulator_executor(qc.Simulator(backend=COMPILED[0], seed=3))(c, theta, 100)
        # the shifted circuits of a parameter-shift gradient measured through it, as through IonQ
        sim = qc.Simulator(backend=COMPILED[0])
        through = sim.gradient(c, ["Z0", "X1 Y2"], theta[0], method="parameter-shift", shots=64, executor=remote)
    exact = sim.gradient(c, ["Z0", "X1 Y2"], theta[0])
    assert through.shape == exact.shape and np.abs(through - exact).max() < 0.6


def test_the_quantum_layer_trains_on_it(shared):
    config = QuantumLayerConfig(n_qubits=4, depth=2, entanglement="circular")
    x = np.random.default_rng(1).uniform(-1, 1, (12, 4))
    layers = [QuantumLayer(config, sim, np.random.default_rng(0)) for sim in (qc.Simulator(backend=COMPILED[0]),
                                                                                shared)]
    outputs = [layer.forward(x) for layer in layers]
    inputs = [layer.backward(np.ones_like(out)) for layer, out in zip(layers, outputs, strict=True)]
    np.testing.assert_array_equal(outputs[1], outputs[0])
    np.testing.assert_array_equal(inputs[1], inputs[0])
    np.testing.assert_array_equal(layers[1].grads["weights"], layers[0].grads["weights"])


def test_training_through_an_executor_factory_gives_the_in_process_weights(address):
    # SPSA on shots: every step samples, so equal weights mean every draw matched the in-process engine's
    config = TrainConfig(QuantumLayerConfig(n_qubits=4, depth=1), epochs=1, batch_size=8, gradient="spsa",
                         shots=64, backend=COMPILED[0], seed=3)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(24, 4)), (rng.random(24) < 0.5).astype(np.float64)
    opened: list[DaskSimulator] = []

    def on_the_cluster(config: TrainConfig, epoch: int) -> qc.Simulator:
        # seeded as simulator_for_epoch seeds the in-process engine
        opened.append(DaskSimulator(address, backend=config.backend, seed=config.seed * 1_000_003 + epoch,
                                   chunk_rows=5))
        return opened[-1]

    try:
        remote = train(build_model("quantum", 4, config), config, x, y, x[:8], y[:8], simulator_factory=on_the_cluster)
    finally:
        for executor in opened:
            executor.close()
    local = train(build_model("quantum", 4, config), config, x, y, x[:8], y[:8], simulator_factory=simulator_for_epoch)
    assert len(opened) == 1 and remote.circuits == local.circuits
    for key, value in local.model.parameters().items():
        np.testing.assert_array_equal(remote.model.parameters()[key], value)


def test_the_async_executor_takes_it_as_its_in_process_target(address):
    c, theta = circuit(), params(8)
    results = []
    for sim in (qc.Simulator(backend=COMPILED[0], seed=4),
                DaskSimulator(address, backend=COMPILED[0], seed=4, chunk_rows=3)):
        with AsyncQuantumExecutor(sim, max_concurrent=1, circuits_per_job=8) as runner:
            results.append(runner.execute(c, theta, shots=50))
        if isinstance(sim, DaskSimulator):
            sim.close()
    assert results[1] == results[0]


@pytest.mark.parametrize(
    ("batch", "row_seconds", "overhead", "slots", "rows"),
    [
        (1000, None, 0.004, 2, 250),  # not measured yet: two tasks per slot
        (100_000, 2e-6, 0.004, 1, 50_000),  # 0.2 s of work: 2 tasks keep 4 ms within 5 %
        (100_000, 3e-6, 0.004, 2, 50_000),  # 0.3 s: 3 tasks within 5 %, 2 as whole rounds over 2 slots
        (100_000, 2e-5, 0.004, 2, 4_167),  # 2 s: 25 tasks within 5 %, 24 as whole rounds
        (32, 3e-6, 0.004, 2, 32),  # a training batch: less work than one task's overhead
        (1000, 1e-5, 0.004, 4, 500),  # 10 ms: two of four slots get more work than overhead
        (5, 1.0, 0.004, 2, 1),  # slow rows: never more tasks than rows
    ],
)
def test_chunk_size(batch, row_seconds, overhead, slots, rows):
    assert chunk_size(batch, row_seconds, overhead, slots) == rows


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chunk_rows": 0}, "chunk_rows"),
        ({"max_overhead": 1.5}, "max_overhead"),
        ({"workers": 2}, "workers="),
        ({"shared_memory": 1}, "shared_memory"),
    ],
)
def test_bad_settings_are_refused(address, kwargs, message):
    with pytest.raises(ValueError, match=message):
        DaskSimulator(address, **kwargs)


@pytest.mark.parametrize("shared_memory", [None, False])
def test_a_worker_killed_mid_batch_costs_a_retry_of_its_chunks_only(address,
                                                                    shared_memory):
    # 13 qubits: a chunk (block) of 100 rows takes about 15 ms, so that the kill lands inside one, not between two
    c, theta = circuit(13), params(4000, 13)
    local = qc.Simulator(backend=COMPILED[0], seed=9)
    want = local.sample(c, 1024, theta)
    in_messages = shared_memory is False
    with DaskSimulator(address, backend=COMPILED[0], seed=9, chunk_rows=100, shared_memory=shared_memory) as remote:
        pids = remote.client.run(os.getpid)
        killed: list[str] = []
        if not in_messages:  # a first call leaves standby tasks: the killed worker dies in the task of one
            local = qc.Simulator(backend=COMPILED[0], seed=9)  # the same draws as the executor's from here
            np.testing.assert_array_equal(remote.sample(c, 1024, theta[:2]), local.sample(c, 1024, theta[:2]))
            want = local.sample(c, 1024, theta)
            time.sleep(0.5)

        since = time.time()  # the scheduler's clock: this call's entries in its transition log

        def progress(dask_scheduler) -> tuple[int, list[str]]:
            # finished tasks from the log: a task whose result the client does not fetch is forgotten at once
            done = sum(entry.timestamp >= since and str(entry.key).startswith("qsim-sample")
                       and (entry.start, entry.finish) == ("processing", "memory")
                       for entry in dask_scheduler.transition_log)
            tasks = [ts for key, ts in dask_scheduler.tasks.items() if str(key).startswith(("qsim-sample",
                                                                                             "qsim-standby"))]
            return done, sorted({ts.processing_on.address for ts in tasks if ts.processing_on is not None})

        finished = threading.Event()

        def kill_when_busy() -> None:
            # in messages: some chunks done, and a worker in the middle of one; through shared memory (a task
            # per worker, sharing out blocks): a worker some blocks into its task
            while not finished.is_set():
                done, busy = remote.client.run_on_scheduler(progress)
                if busy and (done >= 3 if in_messages else time.time() - since > 0.1):
                    killed.append(busy[0])
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    return
                time.sleep(0.01)

        killer = threading.Thread(target=kill_when_busy)
        killer.start()
        got = remote.sample(c, 1024, theta)
        finished.set()
        killer.join()
        assert killed, "the batch finished before a worker could be killed"
        np.testing.assert_array_equal(got, want)  # every row once, from its own stream

        def transitions(dask_scheduler) -> list[tuple[str, str, str]]:
            return [(entry.key, entry.start, entry.finish) for entry in dask_scheduler.transition_log
                    if entry.timestamp >= since and str(entry.key).startswith(("qsim-sample", "qsim-standby"))]

        log = remote.client.run_on_scheduler(transitions)
        stats = remote.last_run
        runs = collections.Counter(key for key, start, finish in log if (start, finish) == ("processing", "memory"))
        # the dead worker's task went elsewhere (the one it was running, and in messages those queued on it, and
        # those it had finished but the client had not gathered yet, recomputed)
        assert any((start, finish) == ("processing", "released") for _, start, finish in log)
        assert stats.chunks == 40
        if in_messages:  # the other chunks ran once
            assert stats.tasks == len(runs) == 40 and stats.transport == "messages"
            assert sum(count - 1 for count in runs.values()) <= stats.chunks // 2
        else:  # the block it was running was given to one more task at once; the other blocks ran once
            assert stats.transport == "shared memory" and stats.redone <= 1 and stats.tasks == 2 + stats.redone
            assert stats.seconds < standby.STANDBY_SECONDS  # the rerun of its standby did not wait for a call
        remote.client.wait_for_workers(2, timeout=60)  # the nanny restarts the worker
        # and gets the circuits installed (the next call's draws are the next ones in process too)
        np.testing.assert_array_equal(remote.sample(c, 1024, theta), local.sample(c, 1024, theta))


def _hide_shared_memory(hidden: bool) -> None:
    """Worker side: look for segments where there are none (as a worker on another machine would), or not."""
    sharedmem.forget(list(sharedmem._mapped))
    sharedmem.SHM_DIR = Path("/nonexistent/shm") if hidden else Path("/dev/shm")


class _DeafInbox(simulator.Inbox):
    """An inbox whose workers' notices go to an address nobody listens on (say, workers in another network
    namespace)."""

    def __init__(self) -> None:
        super().__init__()
        self.address = "\0qsim-notices-nobody"


def test_calls_whose_notices_are_lost_finish_on_dasks_reports(address, monkeypatch):
    c, theta = circuit(), params(40)
    monkeypatch.setattr(simulator, "Inbox", _DeafInbox)
    with DaskSimulator(address, backend=COMPILED[0], chunk_rows=6) as remote:
        np.testing.assert_array_equal(remote.expectation(c, OBS, theta),
                                      qc.Simulator(backend=COMPILED[0]).expectation(c, OBS, theta))
        assert remote.last_run.transport == "shared memory" and remote.last_run.chunks == 7
        remote.client.run(_forget_circuits, list(remote._cluster_backend.circuits.values()))
        with pytest.raises(KeyError, match="qsim-circuit-"):  # and a failing chunk still raises its error
            remote.expectation(c, OBS, theta)


def _forget_circuits(names: list[str]) -> None:
    """Worker side: drop these installed circuits, so that the next chunk of one fails."""
    for name in names:
        del simulator._installed[name]


def test_a_worker_that_cannot_map_the_segments_turns_shared_memory_off(address):
    c, theta = circuit(), params(40)
    want = qc.Simulator(backend=COMPILED[0]).expectation(c, OBS, theta)
    with DaskSimulator(address, backend=COMPILED[0]) as remote:
        assert remote.shared_memory
        remote.client.run(_hide_shared_memory, True)  # say, a worker joined from another machine
        try:
            np.testing.assert_array_equal(remote.expectation(c, OBS, theta), want)
            assert remote.last_run.transport == "messages" and not remote.shared_memory
            remote.client.run(_hide_shared_memory, False)
            remote.expectation(c, OBS, theta)
            assert remote.last_run.transport == "messages"  # for good: workers may come and go
        finally:
            remote.client.run(_hide_shared_memory, False)


def test_shared_memory_is_used_only_where_every_worker_can_map_it(address):
    with Client(address) as client:
        client.run(_hide_shared_memory, True)
        try:
            with pytest.raises(sharedmem.SharedMemoryUnavailable, match="not every worker can map"):
                DaskSimulator(address, shared_memory=True)
            with DaskSimulator(address) as automatic:
                assert not automatic.shared_memory
        finally:
            client.run(_hide_shared_memory, False)
    with DaskSimulator(address) as automatic:
        assert automatic.shared_memory


def test_no_room_for_a_call_sends_only_that_call_in_messages(address, monkeypatch):
    c, theta = circuit(), params(40)
    want = qc.Simulator(backend=COMPILED[0]).expectation(c, OBS, theta)
    with DaskSimulator(address, backend=COMPILED[0]) as remote:
        with monkeypatch.context() as full:
            full.setattr(sharedmem, "_reserve", _no_room)  # a /dev/shm too small for this call's segments
            np.testing.assert_array_equal(remote.expectation(c, OBS, theta), want)
            assert remote.last_run.transport == "messages" and remote.shared_memory
        np.testing.assert_array_equal(remote.expectation(c, OBS, theta), want)
        assert remote.last_run.transport == "shared memory"


def _no_room(fd, size) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def _mapped_segments() -> list[str]:
    return list(sharedmem._mapped)


def test_closing_leaves_no_segment_behind(address):
    before = set(sharedmem.SHM_DIR.glob("qsim-*"))
    c, theta = circuit(), params(40)
    with DaskSimulator(address, backend=COMPILED[0]) as remote:
        remote.expectation(c, OBS, theta)
        remote.vjp(c, OBS, theta, np.ones(len(OBS)))
        kept = {path.name for path in set(sharedmem.SHM_DIR.glob("qsim-*")) - before}
        assert kept  # the input and output segments, reused by the next calls
        assert kept <= set().union(*remote.client.run(_mapped_segments).values())
    assert set(sharedmem.SHM_DIR.glob("qsim-*")) <= before
    with Client(address) as client:
        assert not kept & set().union(*client.run(_mapped_segments).values())  # workers unmapped them
