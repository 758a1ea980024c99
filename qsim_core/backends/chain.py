"""The adjoint sweep's chain rule, compiled: gradients by gate-slot use to gradients by parameter.

The adjoint kernels differentiate per use (one gate slot holding a parameter reference); a use is
usually one parameter's, so the Jacobian from uses to parameters has about one non-zero per row. Applied
as a dense matrix product it cost more than the rest of a seed batch's chain of calls around the kernel,
and it woke BLAS's thread pool, which then spins on the cores the kernels' threads need.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)  # keeps the GIL, as the driver's short adjoint runs do (see driver.GIL_RELEASE_WORK)
def apply_chain_rule(per_use: np.ndarray, start: np.ndarray, param: np.ndarray, scale: np.ndarray,
                     out: np.ndarray) -> None:
    """``out[b, l, p] = sum_u per_use[b, l, u] * J[u, p]``, J given by its non-zeros per use.

    Args:
        per_use: float64[B, L, U], the gradients by use.
        start: int64[U + 1]; use u's non-zeros are ``start[u]:start[u + 1]``.
        param: int64[nnz], their parameter indices.
        scale: float64[nnz], their values.
        out: float64[B, L, P], overwritten.
    """
    for b in range(per_use.shape[0]):
        for lane in range(per_use.shape[1]):
            row = out[b, lane]
            row[:] = 0.0
            for u in range(per_use.shape[2]):
                value = per_use[b, lane, u]
                for k in range(start[u], start[u + 1]):
                    row[param[k]] += value * scale[k]
