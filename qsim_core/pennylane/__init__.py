"""PennyLane integration: the device ``qsim_core.qubit`` (needs the ``[pennylane]`` extra).

``qml.device("qsim_core.qubit", wires=n)`` finds :class:`QsimQubit` through the
``pennylane.plugins`` entry point. See ``docs/guides/pennylane.md``.

Public (``__all__``): :class:`QsimQubit`.
"""

try:
    import pennylane  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("qsim_core.pennylane needs PennyLane: pip install 'qsim-core[pennylane]'") from error

from .device import QsimQubit

__all__ = ["QsimQubit"]
