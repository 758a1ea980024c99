"""Threads of the compiled kernels: the cores this process may use, and OpenMP's wait policy.

The wait policy is set before any OpenMP runtime loads.

The Cython kernels and numba's ``omp`` threading layer share the system's libgomp, which by default
lets an idle team thread spin for a while before it sleeps. On a machine whose cores are busy with
other work, those spinning threads take the time slices the working thread needs: a 2.3 ms batch of
seed circuits took 55-65 ms at two threads with other processes holding the cores, and 2.3 ms with
``OMP_WAIT_POLICY=PASSIVE`` (measured in one session, one process each, same load). On an idle
machine a passive team costs a futex wake per parallel region, microseconds against calls of
milliseconds. The runtime reads the variable once, when it loads, so importing this module (the first
thing ``import qsim_core`` does) sets it; a policy the user chose is kept: ``OMP_WAIT_POLICY``, or
libgomp's own spin count ``GOMP_SPINCOUNT``. The variable reaches every OpenMP runtime loaded later in the
process, other libraries' too: qulacs' 2-thread calls on 8-qubit circuits, a parallel region per gate,
were about 4.5x slower under it on an idle machine, so the benchmarks run every library, ours included,
under libgomp's default (``bench/_runner.py`` sets ``GOMP_SPINCOUNT=300000``).

Public (``__all__``): :func:`usable_cores`, :func:`set_wait_policy_default`, :data:`WAIT_POLICY`,
:data:`THREADS_SLEEP`.
"""

from __future__ import annotations

import os

__all__ = ["THREADS_SLEEP", "WAIT_POLICY", "set_wait_policy_default", "usable_cores"]

#: the policy qsim_core asks for when the environment names none
WAIT_POLICY = "PASSIVE"


def set_wait_policy_default() -> str | None:
    """``OMP_WAIT_POLICY`` after defaulting it to :data:`WAIT_POLICY`, unless the environment already sets it
    or ``GOMP_SPINCOUNT`` (then nothing changes; returns the policy, None when unset).

    Has an effect only on OpenMP runtimes that load after it runs (one already loaded by another
    library keeps the policy it read then).
    """
    if "GOMP_SPINCOUNT" not in os.environ:
        os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
    return os.environ.get("OMP_WAIT_POLICY")


def usable_cores() -> int:
    """CPU cores this process may run on: its affinity mask where the OS has one (a container's or
    ``taskset``'s share), else every core (``os.cpu_count()``); at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


_POLICY = set_wait_policy_default()
#: whether idle OpenMP threads sleep at once (``OMP_WAIT_POLICY=PASSIVE``, the default qsim_core sets) rather
#: than spin for a while first (``ACTIVE``, or libgomp's ``GOMP_SPINCOUNT``): each parallel region then wakes
#: its threads, a futex wake and the OS's (on a VM, the hypervisor's) wake-up, which a small call cannot pay for
#: (``bench/small_calls.py``). Read once, as the OpenMP runtime reads the variables once when it loads.
THREADS_SLEEP = "GOMP_SPINCOUNT" not in os.environ and (_POLICY or "").upper() == "PASSIVE"
