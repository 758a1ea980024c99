"""How much memory a simulation needs, checked before anything is allocated."""

from __future__ import annotations

import os

from .errors import CircuitTooLargeError

#: largest register the 64-bit index arithmetic of the kernels supports
MAX_QUBITS = 40
#: allocations below this are not checked: reading /proc/meminfo costs more than they do
CHECK_ABOVE_BYTES = 64 * 2**20


def available_bytes() -> int:
    """Memory available to this process now (Linux MemAvailable, else physical pages)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _human(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def require(nbytes: int, what: str) -> None:
    """Raise :class:`CircuitTooLargeError` if ``nbytes`` for ``what`` cannot fit in memory.

    Args:
        nbytes: bytes the operation will allocate.
        what: description used in the message, e.g. "a 30-qubit complex128 state".
    """
    if nbytes < CHECK_ABOVE_BYTES:
        return
    available = available_bytes()
    if nbytes > available:
        raise CircuitTooLargeError(
            f"{what} needs {nbytes:,} bytes ({_human(nbytes)}), but only {available:,} bytes "
            f"({_human(available)}) are available"
        )


def check_qubits(num_qubits: int, itemsize: int) -> None:
    """Reject registers beyond the kernels' index range before any arithmetic on 2**n."""
    if num_qubits > MAX_QUBITS:
        raise CircuitTooLargeError(
            f"a {num_qubits}-qubit state needs {2**num_qubits * itemsize:,} bytes; "
            f"this engine supports at most {MAX_QUBITS} qubits"
        )
