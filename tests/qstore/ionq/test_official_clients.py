"""IonQ's official SDKs (qiskit-ionq, cirq-ionq) driven against the local server: same probabilities as the engine."""

from __future__ import annotations

import numpy as np
import pytest

import qsim_core as qc
from qstore.ionq.server import ServerConfig, running_server
from qstore.ionq.server.latency import LatencyProfile

from .noisy import assert_noisy_counts, noisy_circuit

KEY = "sdk-key"
ANGLES = (0.7, 0.3, 1.9)
SHOTS = 200_000


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    config = ServerConfig(db=tmp_path_factory.mktemp("sdk") / "jobs.sqlite", api_keys=frozenset({KEY}),
                          profile=LatencyProfile.load("none"))
    with running_server(config) as url:
        yield url


def ours(theta: float = ANGLES[0]) -> qc.Circuit:
    """X on qubit 0 only, then rotations: every wrong bit order or angle unit shows."""
    return qc.Circuit(3).x(0).ry(1, theta).cnot(1, 2).rx(2, ANGLES[1]).zz(0, 2, ANGLES[2])


def engine(circuit: qc.Circuit) -> np.ndarray:
    return qc.Simulator(seed=0).probabilities(circuit)


def as_vector(probabilities: dict[str, float], n: int) -> np.ndarray:
    """qiskit's ``{"<bits>": p}`` (qubit 0 rightmost) as the engine's vector."""
    vector = np.zeros(2**n)
    for bits, p in probabilities.items():
        vector[int(bits, 2)] = p
    return vector


@pytest.mark.filterwarnings("ignore:Transpiler default optimization_level")
def test_qiskit_ionq(root, monkeypatch):
    qiskit = pytest.importorskip("qiskit")
    qiskit_ionq = pytest.importorskip("qiskit_ionq")
    from qiskit_ionq.ionq_gates import GPI2Gate, GPIGate, ZZGate

    monkeypatch.setenv("IONQ_API_URL", f"{root}/v0.4")  # qiskit probes /backends/<name> there, without a key
    provider = qiskit_ionq.IonQProvider(token=KEY, url=f"{root}/v0.4")
    backend = provider.get_backend("simulator")
    assert backend.num_qubits == 20  # read from our /backends/simulator

    def circuit(theta: float) -> qiskit.QuantumCircuit:
        c = qiskit.QuantumCircuit(3, 3)
        c.x(0)
        c.ry(theta, 1)
        c.cx(1, 2)
        c.rx(ANGLES[1], 2)
        c.rzz(ANGLES[2], 0, 2)
        c.measure([0, 1, 2], [0, 1, 2])
        return c

    # qiskit samples the shots client-side and drops outcomes sampled zero times from get_probabilities(),
    # so enough shots are asked for that every outcome of these circuits (p >= 2e-4) is drawn
    job = backend.run(circuit(ANGLES[0]), shots=SHOTS)
    result = job.result(wait=0.02)
    np.testing.assert_allclose(as_vector(result.get_probabilities(), 3), engine(ours()), atol=1e-10)
    assert sum(result.get_counts().values()) == SHOTS

    batch = backend.run([circuit(0.2), circuit(2.2)], shots=SHOTS)  # one multi-circuit job
    probabilities = batch.result(wait=0.02).get_probabilities()
    for theta, got in zip((0.2, 2.2), probabilities, strict=True):
        np.testing.assert_allclose(as_vector(got, 3), engine(ours(theta)), atol=1e-10)

    native = provider.get_backend("simulator", gateset="native")
    c = qiskit.QuantumCircuit(2, 2)
    c.append(GPIGate(0.1), [0])
    c.append(GPI2Gate(0.3), [1])
    c.append(ZZGate(0.15), [0, 1])
    c.append(GPI2Gate(0.6), [0])
    c.measure([0, 1], [0, 1])
    expected = engine(qc.Circuit(2).gpi(0, 0.1).gpi2(1, 0.3).native_zz(0, 1, 0.15).gpi2(0, 0.6))
    got = native.run(c, shots=SHOTS).result(wait=0.02).get_probabilities()
    np.testing.assert_allclose(as_vector(got, 2), expected, atol=1e-10)


def test_cirq_ionq(root):
    cirq = pytest.importorskip("cirq")
    cirq_ionq = pytest.importorskip("cirq_ionq")
    service = cirq_ionq.Service(remote_host=root, api_key=KEY, default_target="simulator")
    q = cirq.LineQubit.range(3)

    def circuit(theta: float) -> cirq.Circuit:
        return cirq.Circuit([cirq.X(q[0]), cirq.ry(theta)(q[1]), cirq.CNOT(q[1], q[2]), cirq.rx(ANGLES[1])(q[2]),
                             cirq.ZZPowGate(exponent=ANGLES[2] / np.pi, global_shift=-0.5)(q[0], q[2]),
                             cirq.measure(*q, key="m")])

    def big_endian(result, n: int) -> np.ndarray:
        """cirq's ``{int (qubit 0 most significant): p}`` as the engine's vector."""
        vector = np.zeros(2**n)
        for index, p in result.probabilities().items():
            vector[int(format(index, f"0{n}b")[::-1], 2)] = p
        return vector

    job = service.create_job(circuit(ANGLES[0]), repetitions=100)
    result = job.results(polling_seconds=0.02)
    np.testing.assert_allclose(big_endian(result, 3), engine(ours()), atol=1e-6)
    assert result.to_cirq_result(seed=1).measurements["m"].shape == (100, 3)

    batch = service.create_batch_job([circuit(0.2), circuit(2.2)], repetitions=10)
    for theta, got in zip((0.2, 2.2), batch.results(polling_seconds=0.02), strict=True):
        np.testing.assert_allclose(big_endian(got, 3), engine(ours(theta)), atol=1e-6)

    native = cirq.Circuit([cirq_ionq.GPIGate(phi=0.1)(q[0]), cirq_ionq.GPI2Gate(phi=0.3)(q[1]),
                           cirq_ionq.ZZGate(theta=0.15)(q[0], q[1]),  # sent as {"gate": "zz", "phase": ...}
                           cirq_ionq.MSGate(phi0=0.2, phi1=0.7, theta=0.1)(q[1], q[2]),
                           cirq.measure(*q, key="m")])
    expected = engine(qc.Circuit(3).gpi(0, 0.1).gpi2(1, 0.3).native_zz(0, 1, 0.15).ms(1, 2, 0.2, 0.7, 0.1))
    got = service.create_job(native, repetitions=10).results(polling_seconds=0.02)
    np.testing.assert_allclose(big_endian(got, 3), expected, atol=1e-6)

    job = service.create_job(circuit(1.0), repetitions=10)
    job.results(polling_seconds=0.02)
    job.delete()
    assert job.status() == "deleted"
    with pytest.raises(cirq_ionq.IonQNotFoundException):
        service.get_job(job.job_id())


NOISY_SHOTS = 4000


def qiskit_noisy_circuit(qiskit, theta: float = 0.7):
    """:func:`noisy.noisy_circuit` in qiskit."""
    c = qiskit.QuantumCircuit(3, 3)
    c.x(0)
    c.ry(theta, 1)
    for _ in range(4):
        c.cx(1, 2)
        c.rx(0.3, 2)
        c.cx(0, 1)
        c.rzz(0.4, 0, 2)
        c.h(1)
        c.cx(2, 0)
    c.measure([0, 1, 2], [0, 1, 2])
    return c


@pytest.mark.filterwarnings("ignore:Transpiler default optimization_level")
def test_qiskit_ionq_noise_model(root, monkeypatch):
    qiskit = pytest.importorskip("qiskit")
    qiskit_ionq = pytest.importorskip("qiskit_ionq")
    monkeypatch.setenv("IONQ_API_URL", f"{root}/v0.4")
    backend = qiskit_ionq.IonQProvider(token=KEY, url=f"{root}/v0.4").get_backend("simulator")
    backend.set_options(noise_model="aria-2", sampler_seed=21)  # sent as {"noise": {"model", "seed"}}

    def counts(job) -> np.ndarray:
        vector = np.zeros(8, np.int64)
        for bits, count in job.result(wait=0.02).get_counts().items():
            vector[int(bits, 2)] = count
        return vector

    first = counts(backend.run(qiskit_noisy_circuit(qiskit), shots=NOISY_SHOTS))
    assert first.sum() == NOISY_SHOTS  # qiskit's counts are the server's shots, not re-sampled
    assert_noisy_counts(first, noisy_circuit(), "aria-2")
    assert np.array_equal(counts(backend.run(qiskit_noisy_circuit(qiskit), shots=NOISY_SHOTS)), first)  # seeded
    backend.set_options(sampler_seed=22)
    assert not np.array_equal(counts(backend.run(qiskit_noisy_circuit(qiskit), shots=NOISY_SHOTS)), first)


def test_cirq_ionq_noise(root):
    cirq = pytest.importorskip("cirq")
    cirq_ionq = pytest.importorskip("cirq_ionq")
    service = cirq_ionq.Service(remote_host=root, api_key=KEY, default_target="simulator")
    q = cirq.LineQubit.range(3)
    zz = cirq.ZZPowGate(exponent=0.4 / np.pi, global_shift=-0.5)
    layer = [cirq.CNOT(q[1], q[2]), cirq.rx(0.3)(q[2]), cirq.CNOT(q[0], q[1]), zz(q[0], q[2]), cirq.H(q[1]),
             cirq.CNOT(q[2], q[0])]
    circuit = cirq.Circuit([cirq.X(q[0]), cirq.ry(0.7)(q[1]), *layer * 4, cirq.measure(*q, key="m")])
    job = service.create_job(circuit, repetitions=NOISY_SHOTS, noise={"model": "aria-2", "seed": 3})
    result = job.results(polling_seconds=0.02)
    counts = np.zeros(8, np.int64)
    for index, p in result.probabilities().items():  # qubit 0 most significant in cirq's index
        counts[int(format(index, "03b")[::-1], 2)] = round(p * NOISY_SHOTS)
    assert counts.sum() == NOISY_SHOTS
    assert_noisy_counts(counts, noisy_circuit(), "aria-2")
    assert service.get_job(job.job_id()).target() == "simulator"
