"""Fixtures shared by the qstore tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def address():
    """The scheduler address of a local Dask cluster of two one-thread worker processes, per test module."""
    from qstore.distributed import connect

    connection = connect(workers=2)
    yield connection.cluster.scheduler_address
    connection.close()
