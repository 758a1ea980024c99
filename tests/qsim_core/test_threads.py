"""Threads: the cores the kernels may use, and the passive OpenMP wait policy (unless the user chose one)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import qsim_core as qc
from qsim_core.backends import driver

# load the kernels' OpenMP runtime (a Cython call) and let libgomp print the settings it read
PROGRAM = "import qsim_core as qc; qc.Simulator(backend='{backend}').expectation(qc.Circuit(1).h(0), 'Z0')"


def runtime_setting(backend: str, policy: str | None, name: str) -> str:
    """The value of ``name`` libgomp displays in a fresh process that ran ``backend`` (policy unset if None)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["OMP_DISPLAY_ENV"] = "VERBOSE"
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    done = subprocess.run([sys.executable, "-c", PROGRAM.format(backend=backend)], env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    found = re.search(rf"{name} = '(\w+)'", done.stdout + done.stderr)
    if found is None:
        pytest.skip(f"this OpenMP runtime does not display {name} (libgomp does)")
    return found.group(1)


@pytest.mark.parametrize("backend", ["cython", "numba"])
def test_idle_team_threads_do_not_spin_by_default(backend):
    if backend not in qc.available_backends():
        pytest.skip(f"{backend} is not built here")
    # libgomp displays PASSIVE for an unset policy too; what differs is the spin count (300000 when unset)
    assert runtime_setting(backend, None, "GOMP_SPINCOUNT") == "0"


def test_a_policy_the_user_set_is_kept():
    assert runtime_setting("numba", "ACTIVE", "OMP_WAIT_POLICY") == "ACTIVE"
    assert int(runtime_setting("numba", "ACTIVE", "GOMP_SPINCOUNT")) > 0


def test_a_spin_count_the_user_set_is_kept_and_no_policy_added():
    program = "import os, qsim_core; print(os.environ.get('OMP_WAIT_POLICY'), os.environ['GOMP_SPINCOUNT'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", program], env={**env, "GOMP_SPINCOUNT": "300000"},
                          capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["None", "300000"]


def test_build_info_reports_the_policy():
    assert qc.build_info()["openmp_wait_policy"] == {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
                                                      "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT")}


def test_usable_cores_follow_the_affinity_mask():
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no affinity masks on this OS")
    program = ("import os, qsim_core as qc; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
               "print(qc.threads.usable_cores(), qc.Simulator().threads, qc.build_info()['threads'])")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["1", "1", "1"]


@pytest.mark.parametrize(("env", "sleep"), [({}, True), ({"OMP_WAIT_POLICY": "passive"}, True),
                                            ({"OMP_WAIT_POLICY": "ACTIVE"}, False),
                                            ({"GOMP_SPINCOUNT": "300000"}, False)])
def test_threads_sleep_follows_the_policy_in_effect(env, sleep):
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    done = subprocess.run([sys.executable, "-c", "import qsim_core; print(qsim_core.threads.THREADS_SLEEP)"],
                          env={**base, **env}, capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == [str(sleep)]


def test_a_second_thread_is_woken_only_for_enough_work(monkeypatch):
    program = qc.compiler.compile_circuit(qc.seed_circuit(), zbasis=True)
    per_set = (len(program.kind) + 1) << program.num_qubits
    monkeypatch.setattr(driver, "WORK_PER_THREAD", 100 * per_set)
    assert driver._useful_threads(2, driver._work(1, program)) == 1
    assert driver._useful_threads(2, driver._work(100, program)) == 1
    assert driver._useful_threads(2, driver._work(101, program)) == 2
    assert driver._useful_threads(2, driver._work(10**6, program)) == 2  # never more than asked for
    assert driver._useful_threads(8, driver._work(250, program)) == 3
    assert driver._useful_threads(2, driver._work(34, program, passes=3)) == 2  # the adjoint's sets weigh more
    assert driver._useful_threads(1, driver._work(10**6, program)) == 1


class _RecordingKernels:
    """A kernel module's functions, recording the thread counts the driver sets."""

    def __init__(self, kernels):
        self._kernels = kernels
        self.threads = []

    def __getattr__(self, name):
        return getattr(self._kernels, name)

    def set_threads(self, threads):
        self.threads.append(threads)
        self._kernels.set_threads(threads)


@pytest.mark.parametrize("work_per_thread", [1, 10**12])
def test_a_large_state_shares_its_passes_only_when_they_pay(monkeypatch, work_per_thread):
    backend = qc.backends.get_backend(qc.available_backends()[0])
    if not isinstance(backend, driver.CompiledBackend):
        pytest.skip("no compiled backend here")
    kernels = _RecordingKernels(backend.kernels)
    monkeypatch.setattr(driver, "WORK_PER_THREAD", work_per_thread)
    c = qc.Circuit(15)
    for q in range(15):
        c.ry(q, qc.Param(q))
    sim = qc.Simulator(backend=driver.CompiledBackend("recorded", kernels, backend.adjoint_kernels), threads=2)
    reference = qc.Simulator(backend="reference")
    theta = np.linspace(0, 3, 15)
    np.testing.assert_allclose(sim.expectation(c, ["Z0", "Z14"], theta), reference.expectation(c, ["Z0", "Z14"], theta),
                               atol=1e-12)
    assert kernels.threads == [2 if work_per_thread == 1 else 1]


def test_shots_count_as_work(monkeypatch):
    program = qc.compiler.compile_circuit(qc.seed_circuit(), zbasis=True)
    per_set = (len(program.kind) + 1) << program.num_qubits
    monkeypatch.setattr(driver, "WORK_PER_THREAD", 10 * per_set + 10 * driver.SHOT_WORK * 1024)
    assert driver._useful_threads(2, driver._work(10, program, shots=1024)) == 1
    assert driver._useful_threads(2, driver._work(11, program, shots=1024)) == 2
    assert driver._useful_threads(2, driver._work(11, program)) == 1


class _GilRecordingKernels(_RecordingKernels):
    """Also records whether each forward kernel call was told to release the GIL (its last argument)."""

    def __init__(self, kernels):
        super().__init__(kernels)
        self.releases = []

    def run_packed(self, *arguments):
        self.releases.append(arguments[-1])
        return self._kernels.run_packed(*arguments)


def test_a_kernel_call_releases_the_gil_only_for_enough_work(monkeypatch):
    # taking the GIL back waits for any busy Python thread's switch interval: short calls keep it
    backend = qc.backends.get_backend(qc.available_backends()[0])
    if not isinstance(backend, driver.CompiledBackend):
        pytest.skip("no compiled backend here")
    c = qc.seed_circuit()
    theta = np.random.default_rng(3).uniform(-np.pi, np.pi, (200, c.num_params))
    program = qc.compiler.compile_circuit(c, zbasis=True)
    # (the Cython kernels run these calls eight sets at a time, whose work weighs less)
    lanes = backend.stable_rows > 1
    monkeypatch.setattr(driver, "GIL_RELEASE_WORK", driver._work(100, program, lanes=lanes))
    monkeypatch.setattr(driver, "WORK_PER_THREAD", 1)  # every thread asked for is woken
    kernels = _GilRecordingKernels(backend.kernels)
    adjoint_releases = []

    class AdjointKernels:
        pack_adjoint = staticmethod(backend.adjoint_kernels.pack_adjoint)
        adjoint_lane_path = staticmethod(getattr(backend.adjoint_kernels, "adjoint_lane_path", lambda *_: False))

        @staticmethod
        def adjoint_packed(*arguments):
            adjoint_releases.append(arguments[-1])
            return backend.adjoint_kernels.adjoint_packed(*arguments)

    recorded = driver.CompiledBackend("recorded", kernels, AdjointKernels)
    one, two = (qc.Simulator(backend=recorded, threads=threads) for threads in (1, 2))
    reference = qc.Simulator(backend=backend.name)
    for sim, rows in ((one, 99), (one, 100), (two, 199), (two, 200)):
        np.testing.assert_array_equal(sim.expectation(c, ["Z0", "Z5"], theta[:rows]),
                                      reference.expectation(c, ["Z0", "Z5"], theta[:rows]))
    assert kernels.releases == [False, True, False, True]
    for rows in (33, 34):  # an adjoint set with one lane weighs three forward passes (eight at a time too)
        np.testing.assert_array_equal(one.vjp(c, ["Z0"], theta[:rows], [1.0]),
                                      reference.vjp(c, ["Z0"], theta[:rows], [1.0]))
    assert adjoint_releases == [False, True]
