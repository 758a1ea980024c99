"""The numba backend: :mod:`.kernels` (forward passes, measurement, sampling) and :mod:`.adjoint` (the adjoint sweep).

Both are kernel modules in the sense of :data:`qsim_core.backends.contract.KERNEL_FUNCTIONS`, driven by
:class:`~qsim_core.backends.driver.CompiledBackend`; they compile on first use (``cache=True`` keeps the
machine code between runs).
"""
