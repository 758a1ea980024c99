"""A Dask cluster started the way users start one: ``dask scheduler`` and ``dask worker`` processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client

#: seconds a process may take to start (a cold interpreter importing Dask) or to stop
START_SECONDS = 60


class CliCluster:
    """``dask scheduler`` and ``dask worker`` subprocesses on 127.0.0.1, each in its own process group."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.scheduler_file = folder / "scheduler.json"
        self.processes: list[subprocess.Popen] = []
        self.scheduler = self._start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                     "--scheduler-file", str(self.scheduler_file))
        deadline = time.monotonic() + START_SECONDS
        while not self.scheduler_file.exists() or not self.scheduler_file.read_text().strip():
            if time.monotonic() > deadline or self.scheduler.poll() is not None:
                raise RuntimeError("dask scheduler did not start")
            time.sleep(0.05)
        self.address = json.loads(self.scheduler_file.read_text())["address"]

    def add_worker(self, name: str) -> subprocess.Popen:
        """Start one worker process (one thread, under a nanny, as ``dask worker`` does by default)."""
        return self._start("worker", self.address, "--nthreads", "1", "--nworkers", "1", "--host", "127.0.0.1",
                           "--no-dashboard", "--name", name, "--local-directory", str(self.folder / name))

    def _start(self, *command: str) -> subprocess.Popen:
        environ = {**os.environ, "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        process = subprocess.Popen([sys.executable, "-m", "dask", *command], env=environ, cwd=self.folder,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.processes.append(process)
        return process

    def kill_scheduler(self) -> None:
        """SIGKILL the scheduler, as a crash would."""
        os.killpg(self.scheduler.pid, signal.SIGKILL)
        self.scheduler.wait(timeout=START_SECONDS)

    def stop(self) -> None:
        """SIGTERM every process group, then SIGKILL what is left after a grace period; wait for all of it.

        A worker's process group holds the ``dask worker`` process (the nanny) and the worker it spawned, which
        shuts down on its own time after its nanny: the groups, not only their leaders, are waited for.
        """
        for signal_number in (signal.SIGTERM, signal.SIGKILL):
            for process in reversed(self.processes):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal_number)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                for process in self.processes:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(timeout=0.05)
                if not self.alive() and all(process.poll() is not None for process in self.processes):
                    return

    def alive(self) -> list[int]:
        """Process ids of this cluster's processes and their children still running (zombies excluded)."""
        groups = {process.pid for process in self.processes}
        alive = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                # pid (comm) state ppid pgrp ...: the command name may hold spaces, so split after its ")"
                state, _, group = stat.read_text().rpartition(")")[2].split()[:3]
                if int(group) in groups and state != "Z":
                    alive.append(int(stat.parent.name))
        return alive


@contextlib.contextmanager
def cli_cluster(folder: Path, workers: int) -> Iterator[CliCluster]:
    """A scheduler and ``workers`` worker processes, all stopped (and checked gone) on exit."""
    cluster = CliCluster(folder)
    try:
        for k in range(workers):
            cluster.add_worker(f"w{k}")
        yield cluster
    finally:
        cluster.stop()
    assert not cluster.alive(), "a dask process outlived its cluster"


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> Iterator[CliCluster]:
    """One scheduler and two one-thread workers, started as a user would from a shell, per test module."""
    with cli_cluster(tmp_path_factory.mktemp("dask"), workers=2) as cluster:
        # the tests count on both workers: wait until they have joined (a DaskSimulator waits for one)
        with Client(cluster.address, timeout=START_SECONDS) as client:
            client.wait_for_workers(2, timeout=START_SECONDS)
        yield cluster
