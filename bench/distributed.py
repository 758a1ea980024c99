"""DaskSimulator on local clusters of 1 and 2 workers: throughput, a sweep of 8 runs, and the cost of a small call.

Three measurements of :mod:`qstore.distributed`, each timing its setups in
turn (interleaved rounds, one call of each setup per round, the median per
setup; :func:`_runner.time_interleaved`), so that a slow spell of this shared
machine weighs on all of them alike and their ratios hold. Both local
clusters (:class:`~qstore.distributed.DaskSimulator` with ``workers=1`` and
``workers=2``, one engine thread per worker process) are started first and
serve all three.

1. **Throughput**, where distribution makes sense: one call of 1,000,000 seed
   circuits, ``expectation(seed_circuit, [Z0..Z7], theta[B, 40])`` (case
   **8Z**), and one call of 100,000 rows of the training step's gradient,
   ``vjp(seed_circuit, [Z0..Z7], theta, ones(8))`` (case **vjp**: adjoint,
   about 5x the work per row); ``--quick`` and ``--circuits`` take a tenth of
   that and set the 8Z rows (vjp gets a tenth of them). Setups: the in-process
   engine ``qsim_core.Simulator(threads=1)`` and ``threads=2``; DaskSimulator
   on 1 and 2 workers; and the ceiling, 1 and 2 **bare processes** running the
   in-process engine on one thread on their share of the rows, already in
   place (each draws the same rows and keeps its share), started and stopped
   by a pipe message (no Dask, no data moving: the best any scale-out can do
   on this machine in the same minutes), with the environment this run
   started with (not the worker settings a ``LocalCluster`` writes into it).
   Each timed call follows an untimed call of the same setup, so that none
   pays for what another setup's call left running. Each
   DaskSimulator makes one untimed call first (it measures the cost per row,
   which sizes the tasks of the next calls), then a second whose result must
   equal the in-process engine's bit for bit, or the setup is dropped with an
   ``ERROR`` line. Reported: circuits/s, the time against the in-process
   engine on as many threads, the speed-up of 2 over 1 of the same setup, Dask's
   speed-up as a fraction of the bare processes' (the ceiling), and from
   ``last_run``: tasks, rows per task and the engine's share of the workers'
   wall time.
2. **A sweep of 8 training runs** (``qstore.ml.sweep``: digits 3 vs 8, 4 or 6
   qubits, depth 1 or 2, two learning rates, adjoint gradients; enough epochs
   for each run to train about half a second, a third of that with
   ``--quick``), ``run_sweep(..., client=sim.client)`` on the 1-worker and the
   2-worker cluster, the whole call timed (data preparation, the 8 runs as
   tasks, result files, summary and plot), each time into a fresh output
   folder so that no run is skipped as finished, and from a run seed of its
   own (the k-th sweep on a cluster from seed k, the same work), so that no
   run can be answered with an earlier sweep's result that the scheduler
   still holds under the same task key. Reported beside the median: the
   fastest and slowest sweep, the runs' own training seconds summed, and how
   busy that kept the workers.
3. **Per-call overhead of a small batch**: one call of 32 seed rows, 8 <Z>, on
   ``DaskSimulator(workers=2)`` against ``qsim_core.Simulator()`` in process,
   in milliseconds per call: what a call costs on the cluster when there is
   no work to share (the figure behind "use ``Simulator(threads=N)`` on one
   machine"). The DaskSimulator is timed as it is after the large calls (their
   cost per row is known, so 32 rows are one task) and as a new one on the same
   cluster, which has seen only small calls (too small to teach it the cost,
   so the rows are cut into two tasks per worker thread). The setups take turns
   by blocks of back-to-back calls, each call timed, and the median is over all
   the calls of a setup: the first call after another setup's block pays for
   what that one left running in this process (a Dask call's last messages, an
   idle core's wake-up), which is not the cost of a call in a loop.

After each case the run prints how many cores' worth of CPU processes
outside it used meanwhile (``/proc/stat`` less this process and its
descendants): on a 2-core machine a neighbour's test run invalidates every
2-worker figure, and says so there.

Goals (issue 15): 8Z and vjp, 1 worker <= **1.15x** the in-process engine's
time on 1 thread, and 2 workers >= **1.6x** 1 worker (next to the bare
processes' speed-up, the machine's ceiling); the sweep on 2 workers >=
**1.7x** faster than on 1. They are printed as met or missed next to the
figures, not asserted: the exit status is 1 only when a measurement is missing.

Usage: ``python bench/distributed.py [--quick] [--circuits N] [--json PATH]``
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# This script's name shadows Dask's package ``distributed`` for anything that imports it while the script's
# folder leads sys.path (here, and in the worker processes, which run this file again as __mp_main__): import
# the package with the folder off the path; later imports find it in sys.modules.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _BENCH]
importlib.import_module("distributed")
sys.path.insert(0, str(_BENCH))

# isort: split
import numpy as np  # noqa: E402
from _runner import (  # noqa: E402
    Record,
    announce,
    make_parser,
    measured,
    print_table,
    time_interleaved,
    write_json,
)

# isort: split
import qsim_core as qc  # noqa: E402  (after _runner, which puts the checkout on sys.path)
from qsim_core import seed_circuit  # noqa: E402
from qstore.distributed import DaskSimulator  # noqa: E402
from qstore.ml.sweep import parse_config, run_sweep  # noqa: E402

BENCHMARK = "distributed"
NUM_QUBITS = 8
OBSERVABLES = [f"Z{q}" for q in range(NUM_QUBITS)]
COTANGENT = np.ones(NUM_QUBITS)
#: one circuit object for every call: its compiled program is cached on it (and on each worker's copy)
CIRCUIT = seed_circuit()
#: what one call computes, on a Simulator or a DaskSimulator
CASES: dict[str, Callable[[qc.Simulator, np.ndarray], np.ndarray]] = {
    "8Z": lambda sim, theta: sim.expectation(CIRCUIT, OBSERVABLES, theta),
    "vjp": lambda sim, theta: sim.vjp(CIRCUIT, OBSERVABLES, theta, COTANGENT),
}
#: goals: 1 worker / in-process on 1 thread (at most), 2 workers / 1 worker (at least), sweep 2 / 1 (at least)
OVERHEAD_GOAL, SCALING_GOAL, SWEEP_GOAL = 1.15, 1.6, 1.7
#: rows of the small call whose cost is measured in case 3
SMALL_BATCH = 32
SMALL_CASE = f"{SMALL_BATCH} rows 8Z"
#: back-to-back calls of one setup before the next takes its turn (case 3)
SMALL_BLOCK = 20


def sweep_config(epochs: int, seed: int = 0) -> dict[str, Any]:
    """The sweep of case 2: 8 runs (2 x 2 x 2), each training ``epochs`` epochs on the same split from ``seed``."""
    return {"data": {"dataset": "digits:3,8", "n_train": 280, "n_val": 70, "features": 8},
            "fixed": {"epochs": epochs, "gradient": "adjoint", "seed": seed},
            "space": {"qubits": [4, 6], "depth": [1, 2], "lr": [0.02, 0.05]}}


def parameters(batch: int) -> np.ndarray:
    """``batch`` fixed pseudo-random parameter rows ``(batch, 40)``."""
    return np.random.default_rng(2026).uniform(-np.pi, np.pi, (batch, CIRCUIT.num_params))


def record(timing: Any, case: str, backend: str, batch: int, threads: int, note: str, *, qubits: int = NUM_QUBITS,
           **extra: float) -> Record:
    """A record of this benchmark (``threads``: threads in process, or worker processes / bare processes)."""
    return measured(timing, benchmark=BENCHMARK, case=case, backend=backend, kind="ours", qubits=qubits,
                    batch=batch, threads=threads, precision="double", note=note, extra=extra)


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


class OtherLoad:
    """How many cores' worth of CPU the processes outside this run used since it was made (Linux; NaN elsewhere).

    The machine's busy CPU time (``/proc/stat``) minus that of this process and its descendants (Dask's
    workers, the bare processes), over the wall time: a neighbour that starts mid-run shows here, where the
    busy-core figure taken at the start cannot see it. About: the kernel's work for our sockets counts as
    other's.
    """

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float]:
        try:
            tick = os.sysconf("SC_CLK_TCK")
            fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
            busy = sum(fields[i] for i in (0, 1, 2, 5, 6)) / tick  # user nice system irq softirq
            return busy, _tree_cpu_seconds("self", tick), time.perf_counter()
        except (OSError, ValueError, IndexError):
            return math.nan, math.nan, time.perf_counter()

    def cores(self) -> float:
        """Other processes' average busy cores since this object was made."""
        end = self._sample()
        return max(0.0, (end[0] - self.start[0]) - (end[1] - self.start[1])) / (end[2] - self.start[2])


def _tree_cpu_seconds(pid: str, tick: int) -> float:
    """CPU seconds of process ``pid`` with its reaped children, and of its live children, recursively."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    seconds = sum(int(x) for x in stat[stat.rindex(")") + 2:].split()[11:15]) / tick  # utime stime cutime cstime
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue  # thread gone
        for child in children:
            try:
                seconds += _tree_cpu_seconds(child, tick)
            except (OSError, ValueError):
                pass  # exited meanwhile (its time is now its parent's)
    return seconds


def other_load_note(cores: float, what: str) -> str:
    """A line saying how busy other processes kept the cores during ``what``."""
    warning = ": WARNING, a neighbour took CPU, the timings above are not clean" if cores > 0.2 else ""
    return f"other processes kept {cores:.2f} cores busy on average during {what}{warning}"


#: this process's environment before any cluster starts: a ``LocalCluster`` writes its workers' settings
#: (``MALLOC_TRIM_THRESHOLD_``, ``OMP_NUM_THREADS``, ...) into ``os.environ``, which a process started later inherits
_PLAIN_ENVIRONMENT = dict(os.environ)


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` set to ``values`` inside the block (a spawned process takes it), restored after."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class BareProcesses:
    """``count`` plain processes, each holding its share of the rows and running the in-process engine on it.

    The fastest this batch can run on ``count`` cores: no Dask, no data
    moving, only a pipe message to start and one to report. Its scaling is
    the ceiling for the cluster's on this machine at the time of the run (two
    cores of a shared VM slow each other down). Each process draws the rows
    of :func:`parameters` itself and keeps its share, so nothing large is
    pickled and a process that fails at start is reported, not waited for.
    """

    def __init__(self, count: int, batch: int, case: str, timeout: float = 600.0) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes, self.processes = [], []
        for part in np.array_split(np.arange(batch), count):
            here, there = context.Pipe()
            process = context.Process(target=_bare_process, args=(there, batch, int(part[0]), int(part[-1]) + 1, case),
                                      daemon=True)
            with _environment(_PLAIN_ENVIRONMENT):
                process.start()
            there.close()
            self.pipes.append(here)
            self.processes.append(process)
        try:
            for pipe in self.pipes:
                if not pipe.poll(timeout):
                    raise RuntimeError(f"a bare process did not start within {timeout:g} s")
                pipe.recv()  # warmed up (EOFError if it died)
        except BaseException:
            self.close()
            raise

    def __call__(self) -> None:
        for pipe in self.pipes:
            pipe.send(True)
        for pipe in self.pipes:
            pipe.recv()

    def close(self) -> None:
        for pipe, process in zip(self.pipes, self.processes, strict=True):
            try:
                pipe.send(False)
            except OSError:
                pass  # already gone
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()


def _bare_process(pipe: Any, batch: int, first: int, stop: int, case: str) -> None:
    theta = parameters(batch)[first:stop].copy()  # the same rows as the other setups', this process's share
    sim = qc.Simulator(threads=1)
    CASES[case](sim, theta)
    pipe.send("ready")
    while pipe.recv():
        CASES[case](sim, theta)
        pipe.send("done")


# ---------------------------------------------------------------------------------------------------- 1. throughput


def measure_throughput(dask: dict[int, DaskSimulator], batches: dict[str, int], repeat: int) -> list[Record]:
    """Each case in process (1 and 2 threads), on the clusters of 1 and 2 workers, and on 1 and 2 bare processes,
    timed in turn. A Dask result that differs from the in-process engine's drops its setup."""
    records = []
    local = {1: qc.Simulator(threads=1), 2: qc.Simulator(threads=2)}
    for case, run in CASES.items():
        batch = batches[case]
        theta = parameters(batch)
        reference = run(local[1], theta)  # also the warm-up calls of the in-process setups
        run(local[2], theta)
        calls: dict[tuple[str, int], Callable[[], object]] = {
            ("in-process", count): functools.partial(run, sim, theta) for count, sim in local.items()}
        for count, sim in dask.items():
            call = functools.partial(run, sim, theta)
            call()  # the first call of a kind measures its cost per row, which sizes the tasks of the next
            if not np.array_equal(call(), reference):
                print(f"ERROR: {case}, {count} worker(s): results differ from the in-process engine's; dropped")
                continue
            calls["dask", count] = call
        del reference
        bare: dict[int, BareProcesses] = {}
        try:
            for count in (1, 2):
                bare[count] = BareProcesses(count, batch, case)
            calls |= {("bare", count): processes for count, processes in bare.items()}
            # each timed call after an untimed one of its own: what another setup's call leaves running (a
            # cluster's workers releasing results, its scheduler's bookkeeping) is not this setup's cost
            timings = time_interleaved(calls, repeat=repeat, warmup=False, lead=1)
        finally:
            for processes in bare.values():
                processes.close()
        for (kind, count), timing in timings.items():
            if kind == "bare":
                records.append(record(timing, case, f"bare processes ({local[1].backend})", batch, count,
                                      f"{count} process(es) x 1 thread, rows already in place, no Dask"))
            elif kind == "in-process":
                records.append(record(timing, case, f"in-process ({local[count].backend})", batch, count,
                                      f"qsim_core.Simulator(threads={count})"))
            else:
                sim = dask[count]
                stats = sim.last_run
                records.append(record(timing, case, f"dask ({sim.engine})", batch, count,
                                      f"DaskSimulator(workers={count}): LocalCluster, {count} process(es) x 1 "
                                      f"thread; rows {'scattered' if stats.scattered else 'in the tasks'}"
                                      f"{' straight to the workers' if stats.scattered and sim.direct else ''}",
                                      tasks=stats.tasks, rows_per_task=stats.rows_per_task,
                                      call_seconds=stats.seconds, engine_seconds=stats.engine_seconds,
                                      rerun=stats.rerun))
    return records


def _kind(r: Record) -> str:
    return r.backend.split(" (")[0]


def throughput_rows(records: list[Record]) -> list[list[Any]]:
    """Table rows: case, setup, count, seconds, circuits/s, time / in-process on as many threads, speed-up of 2
    over 1 of the same setup, Dask's speed-up as a fraction of the bare processes', tasks, rows per task, and the
    engine's share of the workers' time in the last call."""
    rows = []
    for case in CASES:
        ours = {(_kind(r), r.threads): r for r in records if r.case == case}
        order = {"in-process": 0, "dask": 1, "bare processes": 2}
        for (kind, count), r in sorted(ours.items(), key=lambda item: (order[item[0][0]], item[0][1])):
            local = ours.get(("in-process", count))
            single = ours.get((kind, 1))
            speedup = single.seconds / r.seconds if count > 1 and single else float("nan")
            ceiling = ours.get(("bare processes", 1)), ours.get(("bare processes", 2))
            of_ceiling = float("nan")
            if kind == "dask" and count > 1 and None not in ceiling:
                of_ceiling = speedup / (ceiling[0].seconds / ceiling[1].seconds)
            stats = r.extra
            share = stats["engine_seconds"] / (stats["call_seconds"] * count) if "engine_seconds" in stats \
                else float("nan")
            rows.append([case, r.batch, kind, count, r.seconds, r.circuits_per_s,
                         r.seconds / local.seconds if local and kind != "in-process" else float("nan"), speedup,
                         of_ceiling, int(stats.get("tasks", 0)) or "-", int(stats.get("rows_per_task", 0)) or "-",
                         share])
    return rows


def throughput_goals(records: list[Record]) -> list[str]:
    """One line per goal of case 1: measured, goal, met or missed."""
    lines = []
    for case in CASES:
        seconds = {(_kind(r), r.threads): r.seconds for r in records if r.case == case}
        if ("dask", 1) in seconds and ("in-process", 1) in seconds:
            ratio = seconds["dask", 1] / seconds["in-process", 1]
            lines.append(f"{case}: 1 worker / in-process on 1 thread = {ratio:.2f}x (goal <= {OVERHEAD_GOAL:.2f}x): "
                         f"{verdict(ratio <= OVERHEAD_GOAL)}")
        if ("dask", 1) in seconds and ("dask", 2) in seconds:
            speedup = seconds["dask", 1] / seconds["dask", 2]
            ceiling = seconds["bare processes", 1] / seconds["bare processes", 2]
            lines.append(f"{case}: 2 workers / 1 worker = {speedup:.2f}x (goal >= {SCALING_GOAL}x): "
                         f"{verdict(speedup >= SCALING_GOAL)}; 2 / 1 bare processes (the ceiling) = {ceiling:.2f}x, "
                         f"Dask at {speedup / ceiling:.0%} of it")
    return lines


# --------------------------------------------------------------------------------------------------------- 2. sweep


def measure_sweep(dask: dict[int, DaskSimulator], epochs: int, repeat: int) -> list[Record]:
    """The sweep of :func:`sweep_config` on each cluster, timed in turn, into a fresh output folder each time."""
    raw = sweep_config(epochs)
    # The k-th sweep on a cluster trains from seed k (the same work): its runs have ids, and so Dask keys, of their
    # own, so none can be answered by the result of an earlier sweep's run that the scheduler still holds.
    configs = [parse_config(sweep_config(epochs, seed)) for seed in range(repeat + 1)]
    runs = len(configs[0].settings())
    # per sweep (the first, untimed, dropped below): its wall seconds, and the runs' training seconds summed
    walls: dict[int, list[float]] = {count: [] for count in dask}
    work: dict[int, list[float]] = {count: [] for count in dask}
    results: dict[int, Any] = {}
    with tempfile.TemporaryDirectory(prefix="qstore-bench-sweep-") as parent:

        def sweep(count: int) -> None:
            start = time.perf_counter()
            config = configs[len(walls[count])]
            result = run_sweep(config, tempfile.mkdtemp(dir=parent), client=dask[count].client, progress=False)
            walls[count].append(time.perf_counter() - start)
            if result.failures or result.ran != runs:
                raise RuntimeError(f"sweep on {count} worker(s): {result.ran} of {runs} runs trained; "
                                   f"{result.failures}")
            work[count].append(sum(row["wall_s"] for row in result.rows))
            results[count] = result

        timings = time_interleaved({count: functools.partial(sweep, count) for count in dask}, repeat=repeat)
    records = []
    for count, timing in timings.items():
        rows = results[count].rows
        records.append(record(timing, "sweep", f"dask sweep ({dask[count].engine})",
                              sum(row["circuits"] for row in rows), count,
                              f"run_sweep of {runs} runs (qubits {raw['space']['qubits']}, {epochs} epochs, "
                              f"{raw['data']['dataset']}) on DaskSimulator(workers={count}).client; batch = the "
                              "sweep's circuits", qubits=max(raw["space"]["qubits"]), runs=runs,
                              sweep_seconds_min=min(walls[count][1:]), sweep_seconds_max=max(walls[count][1:]),
                              run_seconds_sum=statistics.median(work[count][1:]),
                              best_val_acc=max(row["val_acc"] for row in rows)))
    return records


def sweep_rows(records: list[Record]) -> list[list[Any]]:
    """Table rows: workers, runs, sweep seconds (median, fastest, slowest), the runs' training seconds summed (median
    over the sweeps), the workers' busy share, speed-up over 1 worker, best validation accuracy."""
    ours = {r.threads: r for r in records if r.case == "sweep"}
    return [[count, int(r.extra["runs"]), r.seconds, r.extra["sweep_seconds_min"], r.extra["sweep_seconds_max"],
             r.extra["run_seconds_sum"], r.extra["run_seconds_sum"] / (r.seconds * count),
             ours[1].seconds / r.seconds if count > 1 and 1 in ours else float("nan"), r.extra["best_val_acc"]]
            for count, r in sorted(ours.items())]


def sweep_goals(records: list[Record]) -> list[str]:
    ours = {r.threads: r.seconds for r in records if r.case == "sweep"}
    if set(ours) != {1, 2}:
        return []
    speedup = ours[1] / ours[2]
    return [f"sweep: 2 workers / 1 worker = {speedup:.2f}x (goal >= {SWEEP_GOAL}x): {verdict(speedup >= SWEEP_GOAL)}"]


# ------------------------------------------------------------------------------------------------- 3. per-call cost


def measure_small(two: DaskSimulator, repeat: int) -> list[Record]:
    """One call of :data:`SMALL_BATCH` rows, 8 <Z>, in process and on the 2-worker cluster, timed in turn: as the
    DaskSimulator is after the large calls, and as a new one on the same cluster that has seen only small calls."""
    theta = parameters(SMALL_BATCH)
    run = CASES["8Z"]
    local = qc.Simulator()
    fresh = DaskSimulator(client=two.client)
    try:
        reference = run(local, theta)
        calls: dict[str, Callable[[], object]] = {"in-process": functools.partial(run, local, theta)}
        for name, sim in (("dask", two), ("dask, new", fresh)):
            call = functools.partial(run, sim, theta)
            call()
            if not np.array_equal(call(), reference):
                print(f"ERROR: {SMALL_CASE}, {name}: results differ from the in-process engine's; dropped")
                continue
            calls[name] = call
        timings = time_interleaved(calls, repeat=repeat // SMALL_BLOCK, block=SMALL_BLOCK)
        stats = {"dask": two.last_run, "dask, new": fresh.last_run}
    finally:
        fresh.close()
    records = []
    for name, timing in timings.items():
        if name == "in-process":
            records.append(record(timing, SMALL_CASE, f"in-process ({local.backend})", SMALL_BATCH, local.threads,
                                  f"qsim_core.Simulator() ({local.threads} threads)", ms_per_call=timing.seconds * 1e3))
            continue
        note = ("DaskSimulator(workers=2) after the large calls (cost per row known)" if name == "dask" else
                "a new DaskSimulator(client=...) on the same 2 workers, having seen only calls of "
                f"{SMALL_BATCH} rows (cost per row not measured)")
        records.append(record(timing, SMALL_CASE, f"{name} ({two.engine})", SMALL_BATCH, 2, note,
                              ms_per_call=timing.seconds * 1e3, tasks=stats[name].tasks,
                              rows_per_task=stats[name].rows_per_task))
    return records


def small_rows(records: list[Record]) -> list[list[Any]]:
    """Table rows: setup, threads or workers, rows, ms per call, tasks, the call's time over the in-process one."""
    ours = [r for r in records if r.case == SMALL_CASE]
    local = next((r for r in ours if r.backend.startswith("in-process")), None)
    return [[r.backend, r.threads, r.batch, r.extra["ms_per_call"], int(r.extra.get("tasks", 0)) or "-",
             r.seconds / local.seconds if local else float("nan")] for r in ours]


# ---------------------------------------------------------------------------------------------------------- main


def _tag(records: list[Record], others: float) -> None:
    for r in records:
        r.extra.setdefault("others_busy_cores", others)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 1 if a measurement is missing (goals are reported, not enforced)."""
    parser = make_parser(BENCHMARK, __doc__.splitlines()[0],
                         "smoke test (1-2 minutes): 100,000 / 10,000 rows, 3 rounds, shorter sweep runs")
    parser.add_argument("--circuits", type=int,
                        help="rows of the 8Z call; the vjp call gets a tenth (default: 1,000,000; --quick 100,000)")
    args = parser.parse_args(argv)
    announce()
    rows = args.circuits or (100_000 if args.quick else 1_000_000)
    batches = {"8Z": rows, "vjp": max(1, rows // 10)}
    repeat = 3 if args.quick else 7
    epochs, sweep_repeat = (40, 2) if args.quick else (120, 4)
    small_repeat = 100 if args.quick else 400

    records: list[Record] = []
    with DaskSimulator(workers=1) as one, DaskSimulator(workers=2) as two:
        dask = {1: one, 2: two}
        print(f"local clusters: {one.slots} and {two.slots} worker thread(s), engine {one.engine}")

        load = OtherLoad()
        records += measure_throughput(dask, batches, repeat)
        _tag(records, load.cores())
        print_table(["case", "rows", "setup", "workers/threads", "s/call", "circuits/s", "x in-process",
                     "2 / 1", "of ceiling", "tasks", "rows/task", "engine share"], throughput_rows(records),
                    title=f"1. throughput: one call, median of {repeat} interleaved rounds (x in-process: time over "
                          "the in-process engine on as many threads; 2 / 1: speed-up over 1 of the same setup; "
                          "of ceiling: Dask's 2 / 1 over the bare processes')")
        goals = throughput_goals(records)
        print("\n".join(goals))
        print(other_load_note(records[0].extra["others_busy_cores"], "case 1"))

        load = OtherLoad()
        sweep = measure_sweep(dask, epochs, sweep_repeat)
        _tag(sweep, load.cores())
        records += sweep
        print_table(["workers", "runs", "sweep s", "fastest", "slowest", "runs' training s", "workers busy", "2 / 1",
                     "best val acc"], sweep_rows(sweep),
                    title=f"2. sweep of 8 runs (digits 3 vs 8, {epochs} epochs each), whole run_sweep call into a "
                          f"fresh folder, median of {sweep_repeat} interleaved rounds")
        goals += sweep_goals(sweep)
        print("\n".join(sweep_goals(sweep)))
        print(other_load_note(sweep[0].extra["others_busy_cores"], "case 2"))

        load = OtherLoad()
        small = measure_small(two, small_repeat)
        _tag(small, load.cores())
        records += small
        print_table(["setup", "workers/threads", "rows", "ms/call", "tasks", "x in-process"], small_rows(small),
                    title=f"3. per-call cost: one call of {SMALL_BATCH} seed rows, 8 <Z>, median of {small_repeat} "
                          f"calls per setup (in turn by blocks of {SMALL_BLOCK} back-to-back calls)")
        print(other_load_note(small[0].extra["others_busy_cores"], "case 3"))

    written = write_json(records, args.json, BENCHMARK)
    print("\ngoals:\n  " + "\n  ".join(goals))
    print(f"\nwrote {len(records)} records to {written}")
    expected = {(case, kind, count) for case in CASES for kind in ("in-process", "dask", "bare processes")
                for count in (1, 2)} | {("sweep", "dask sweep", count) for count in (1, 2)}
    missing = expected - {(r.case, _kind(r), r.threads) for r in records}
    if missing or len(small) < 3:
        print("missing measurements: " + ", ".join(f"{c} {k} {n}" for c, k, n in sorted(missing)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
