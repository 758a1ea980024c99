"""The compiled-program cache: bounded by bytes, least recently used out, safe under many threads."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import qsim_core as qc
from qsim_core.compiler import DEFAULT_BLOCK_QUBITS, Program, compile_circuit
from qsim_core.compiler.compile import PROGRAM_CACHE, ProgramCache, program_nbytes


def ladder(k: int, n: int = 5) -> qc.Circuit:
    """A distinct structure per ``k``: ``k + 1`` layers of RY rotations (constant angles) and CNOTs."""
    circuit = qc.Circuit(n)
    for layer in range(k + 1):
        for q in range(n):
            circuit.ry(q, 0.1 * (layer + 1) + 0.01 * q)
        for q in range(n - 1):
            circuit.cnot(q, q + 1)
    return circuit


def key(k: int) -> tuple:
    """The cache key of ``ladder(k)`` compiled with the default options."""
    return (ladder(k).structure_key(), False, DEFAULT_BLOCK_QUBITS, True)


def arrays_nbytes(value: object) -> int:
    """Bytes of every numpy array reachable through attributes and tuples (an independent walk)."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, tuple):
        return sum(arrays_nbytes(item) for item in value)
    if hasattr(value, "__dict__"):
        return sum(arrays_nbytes(item) for item in vars(value).values())
    return 0


def same_program(a: Program, b: Program) -> bool:
    return all(np.array_equal(getattr(a, name), getattr(b, name))
               for name in ("init_u1", "block_start", "block_qubits", "kind", "q0", "q1", "arg", "perm_table",
                            "run_start", "run_gate"))


@pytest.fixture
def bounded_cache():
    """The global cache, emptied, with its bound restored afterwards."""
    before = PROGRAM_CACHE.max_bytes
    PROGRAM_CACHE.clear()
    yield PROGRAM_CACHE
    PROGRAM_CACHE.resize(before)
    PROGRAM_CACHE.clear()


def test_a_programs_size_is_the_bytes_of_all_its_arrays():
    program = compile_circuit(qc.seed_circuit())
    assert program_nbytes(program) == arrays_nbytes(program) > program.kind.nbytes + program.arg.nbytes
    assert program_nbytes(compile_circuit(ladder(6))) > program_nbytes(compile_circuit(ladder(0)))


def test_the_cache_evicts_least_recently_used_programs_by_bytes():
    programs = [compile_circuit(ladder(k)) for k in range(4)]
    sizes = [program_nbytes(p) for p in programs]
    cache = ProgramCache(max_bytes=sizes[0] + sizes[1] + sizes[2])
    for k in range(3):
        assert cache.insert((k,), programs[k]) is programs[k]
    assert len(cache) == 3 and cache.nbytes == sum(sizes[:3])
    assert cache.get((0,)) is programs[0]  # now the most recently used: (1,) goes first
    cache.insert((3,), programs[3])
    assert (1,) not in cache and (0,) in cache and (3,) in cache
    assert cache.nbytes == sum(program_nbytes(cache.get(key)) for key in [(0,), (2,), (3,)] if key in cache)
    assert cache.nbytes <= cache.max_bytes
    cache.resize(sizes[3])
    assert list(k for k in [(0,), (2,), (3,)] if k in cache) == [(3,)] and cache.nbytes == sizes[3]
    cache.resize(sizes[3] - 1)  # a program larger than the bound is not kept, but still returned
    assert len(cache) == 0 and cache.nbytes == 0
    assert cache.insert((3,), programs[3]) is programs[3] and len(cache) == 0
    with pytest.raises(ValueError, match="max_bytes must be an integer >= 0"):
        ProgramCache(max_bytes=-1)
    with pytest.raises(ValueError, match="max_bytes must be an integer >= 0"):
        cache.resize(1.5)


def test_compile_circuit_stays_within_the_byte_bound(bounded_cache):
    sizes = [program_nbytes(compile_circuit(ladder(k))) for k in range(8)]  # measured, then emptied
    bounded_cache.clear()
    bounded_cache.resize(sizes[6] + sizes[7])
    for k in range(8):
        compile_circuit(ladder(k))
        assert bounded_cache.nbytes <= bounded_cache.max_bytes
    assert bounded_cache.nbytes == sizes[6] + sizes[7] and len(bounded_cache) == 2
    first = compile_circuit(ladder(7))
    assert compile_circuit(ladder(7)) is first  # a cached structure compiles once


@pytest.mark.parametrize("max_bytes", [None, 1], ids=["roomy", "evicting-constantly"])
def test_many_threads_compiling_at_once(bounded_cache, max_bytes):
    structures = 6
    expected = [compile_circuit(ladder(k)) for k in range(structures)]  # single-threaded reference
    bounded_cache.clear()
    if max_bytes is not None:
        bounded_cache.resize(max(program_nbytes(p) for p in expected) + max_bytes)  # room for about one
    jobs = [k % structures for k in range(240)]  # every structure many times, from every thread

    def compile_one(k: int) -> tuple[int, Program]:
        return k, compile_circuit(ladder(k))  # a new circuit object each time: only the shared cache helps

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, to interleave the cache's steps
    try:
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(compile_one, jobs))
    finally:
        sys.setswitchinterval(interval)
    for k, program in results:
        assert same_program(program, expected[k])
    assert bounded_cache.nbytes <= bounded_cache.max_bytes
    cached = [bounded_cache.get(key(k)) for k in range(structures)]
    assert bounded_cache.nbytes == sum(program_nbytes(p) for p in cached if p is not None)
    if max_bytes is None:  # nothing evicted: one program per structure, shared by every thread
        for k in range(structures):
            assert len({id(program) for j, program in results if j == k}) == 1
