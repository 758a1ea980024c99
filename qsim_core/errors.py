"""Exceptions raised by qsim_core.

Every error a user can provoke is a :class:`QsimError`; the subclasses also
derive from the matching built-in exception so ``except ValueError`` keeps
working in user code.

Public (``__all__``, all also ``qsim_core.<name>``): every class here.
"""


class QsimError(Exception):
    """Base class of every error raised by qsim_core."""


class CircuitError(QsimError, ValueError):
    """A circuit operation is malformed (qubits, gate name, constant angle)."""


class ParameterError(QsimError, ValueError):
    """Parameter values do not fit the circuit (shape, count, NaN or inf)."""


class ObservableError(QsimError, ValueError):
    """A Pauli-string observable cannot be parsed or names a missing qubit."""


class BackendUnavailableError(QsimError, RuntimeError):
    """The requested backend is unknown or cannot run on this machine."""


class CircuitTooLargeError(QsimError, MemoryError):
    """The state (or batch of states) needs more memory than is available."""


__all__ = [
    "BackendUnavailableError",
    "CircuitError",
    "CircuitTooLargeError",
    "ObservableError",
    "ParameterError",
    "QsimError",
]
