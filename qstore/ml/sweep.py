"""``qstore sweep``: grid or random search over training settings, one run per Dask task, resumable.

Every run trains the hybrid quantum model of ``qstore train`` (no classical
baseline) on one shared data split, as one task on a Dask cluster (a local
one by default, see :func:`qstore.distributed.connect`), and its result is
written by this process, atomically, to ``OUTPUT/runs/<run id>.h5``
(:mod:`qstore.ml.checkpoint`: weights, Adam and RNG state, per-epoch metrics,
and in the metadata the run's settings, accuracies, wall time and circuits).
The run id is a hash of everything that defines the run (its settings and
the data section), so a sweep started again with the same output folder
skips every run whose file is there, whatever happened in between (an
interruption, a changed grid): finished runs are never repeated. At the end
the sweep prints a table of all its runs, best validation accuracy first,
and writes ``OUTPUT/summary.json`` and ``OUTPUT/sweep.png`` (validation
accuracy against wall time per run).

Config file
-----------
JSON or TOML (by extension: ``.json``, ``.toml``); every section and key is
optional except ``space``. In TOML::

    search = "grid"          # "grid": every combination of the space; "random": `runs` draws
    # runs = 20              # random search: number of runs (duplicate draws run once)
    # seed = 0               # random search: seeds the draws

    [data]                   # the split every run trains on (prepared once, here)
    dataset = "digits:3,8"   # synthetic | digits:A,B | petimages:PATH   (default: synthetic)
    n_train = 200            # default: 800 for images, 80 % for digits
    n_val = 50               # default: 200 for images, 20 % for digits
    features = 8             # PCA features per image (default: 16)
    seed = 0                 # selects the split (default: 0)

    [fixed]                  # settings of every run; defaults are qstore train's
    epochs = 3
    shots = 256              # used by parameter-shift and spsa runs; adjoint runs are exact

    [space]                  # swept settings: a list of values each
    qubits = [4, 6]
    depth = [1, 2]
    entanglement = ["linear", "full"]
    encoding = ["angle"]
    gradient = ["adjoint", "parameter-shift"]
    lr = [0.01, 0.05]        # random search also takes {uniform = [a, b]} or {log_uniform = [a, b]}
    seed = [0, 1]

The settings (in ``fixed`` or ``space``, not both) are ``qstore train``'s, under
the same names (``batch_size`` for ``--batch-size``, ``gradient`` for ``--grad``)
and with the same defaults and checks: both are derived from the declarations
of :class:`~qstore.ml.TrainConfig` and :class:`~qstore.ml.QuantumLayerConfig`
(``qstore train --help`` lists them; :data:`SETTINGS` holds them). The
``data`` section takes :class:`~qstore.data.DataConfig`'s (:data:`DATA`). A
``bases`` value in ``space`` is a list of lists.

Anything else (an unknown key, a value of the wrong type or out of range, an
empty list, a range in a grid, a dataset that cannot be loaded) is rejected
before any run starts, with a message that names the key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import time
import tomllib
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qsim_core import BackendUnavailableError
from qsim_core.backends import get_backend

from ..data import DataConfig, DataError, load_dataset, prepare_data
from ..distributed import Client, as_completed, connect, share
from ..settings import Check, build, declared, integer, plain
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .layers import GRADIENT_METHODS
from .train import TrainConfig, TrainState, build_model, train

SEARCHES = ("grid", "random")
DISTRIBUTIONS = ("uniform", "log_uniform")
#: metadata tag of a sweep run's checkpoint
RUN_KIND = "sweep-run"
#: every run setting, from the declarations of TrainConfig and QuantumLayerConfig: (check, default)
SETTINGS: dict[str, tuple[Check, Any]] = {spec.name: (spec.check, plain(default))
                                          for spec, default in declared(TrainConfig)}
#: the data section, from DataConfig's declarations: (check, default)
DATA: dict[str, tuple[Check, Any]] = {spec.name: (spec.check, plain(default))
                                      for spec, default in declared(DataConfig)}


class SweepConfigError(ValueError):
    """A sweep config that cannot run; the message names the key."""


_TOP = ("search", "runs", "seed", "data", "fixed", "space")


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """A validated sweep (see the module docstring for the file format).

    Attributes:
        search: ``"grid"`` or ``"random"``.
        runs: random search: number of draws; None for a grid.
        seed: random search: seeds the draws.
        data: the data section, defaults filled in.
        fixed: settings shared by every run (as given).
        space: swept settings: a list of values, or a ``{distribution: [low, high]}`` range.
    """

    search: str
    runs: int | None
    seed: int
    data: dict[str, Any]
    fixed: dict[str, Any]
    space: dict[str, Any]

    def settings(self) -> list[dict[str, Any]]:
        """Every run's complete settings (defaults filled in), in a reproducible order, without duplicates."""
        base = {name: default for name, (_, default) in SETTINGS.items()} | self.fixed
        if self.search == "grid":
            draws = [dict(zip(self.space, values, strict=True)) for values in itertools.product(*self.space.values())]
        else:
            rng = np.random.default_rng(self.seed)
            draws = [{name: _draw(rng, values) for name, values in self.space.items()} for _ in range(self.runs)]
        unique: dict[str, dict[str, Any]] = {}
        for draw in draws:
            settings = base | draw
            unique.setdefault(run_id(settings, self.data), settings)
        return list(unique.values())


def _draw(rng: np.random.Generator, values: Any) -> Any:
    """One value of a random search: a list's element, or a number from a range."""
    if isinstance(values, list):
        return values[int(rng.integers(len(values)))]
    (kind, (low, high)), = values.items()
    return float(rng.uniform(low, high) if kind == "uniform" else math.exp(rng.uniform(math.log(low), math.log(high))))


def load_config(path: str | Path) -> SweepConfig:
    """Read and validate a JSON or TOML sweep config.

    Raises:
        SweepConfigError: unreadable, not JSON/TOML, or invalid (naming the key).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise SweepConfigError(f"cannot read the sweep config {path}: {error.strerror or error}") from None
    try:
        if path.suffix == ".toml":
            raw = tomllib.loads(text)
        elif path.suffix == ".json":
            raw = json.loads(text)
        else:
            raise SweepConfigError(f"{path}: a sweep config is a .json or .toml file")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise SweepConfigError(f"{path} is not valid {path.suffix[1:].upper()}: {error}") from None
    return parse_config(raw)


def parse_config(raw: Any) -> SweepConfig:
    """Validate a config mapping (what the file holds); see :func:`load_config`."""
    if not isinstance(raw, Mapping):
        raise SweepConfigError("a sweep config is a table of keys (search, runs, seed, data, fixed, space)")
    _known(raw, _TOP, "")
    search = raw.get("search", "grid")
    if search not in SEARCHES:
        raise SweepConfigError(f"search: must be one of {', '.join(SEARCHES)}, got {search!r}")
    runs, seed = raw.get("runs"), raw.get("seed", 0)
    if search == "grid":
        for name in ("runs", "seed"):
            if name in raw:
                raise SweepConfigError(f"{name}: applies to search = \"random\" (a grid runs every combination; "
                                       "the runs' own seed is fixed.seed or space.seed)")
    elif integer(1)(runs):
        raise SweepConfigError(f"runs: random search needs the number of runs, a positive integer, got {runs!r}")
    if integer(0)(seed):
        raise SweepConfigError(f"seed: {integer(0)(seed)}, got {seed!r}")
    data = _section(raw, "data", DATA)
    fixed = _section(raw, "fixed", SETTINGS)
    data = {name: default for name, (_, default) in DATA.items()} | data
    space = raw.get("space")
    if not isinstance(space, Mapping) or not space:
        raise SweepConfigError("space: needs at least one swept setting, e.g. space.lr = [0.01, 0.05]")
    _known(space, SETTINGS, "space.")
    for name, values in space.items():
        if name in fixed:
            raise SweepConfigError(f"space.{name}: also set in fixed; a setting is either fixed or swept")
        _check_values(name, values, search)
    config = SweepConfig(search, runs, seed, dict(data), dict(fixed), dict(space))
    for settings in config.settings():  # combinations the single values allow but the model does not
        try:
            train_config(settings)
        except ValueError as error:
            raise SweepConfigError(f"space: the run {_describe(settings, space)} is impossible: {error}") from None
    for backend in {settings["backend"] for settings in config.settings()}:
        try:
            get_backend(backend)
        except BackendUnavailableError as error:
            raise SweepConfigError(f"backend: {error}") from None
    return config


def _known(table: Mapping, names: Sequence[str] | Mapping, prefix: str) -> None:
    for name in table:
        if name not in names:
            raise SweepConfigError(f"{prefix}{name}: unknown key; known: {', '.join(names)}")


def _section(raw: Mapping, section: str, spec: Mapping[str, tuple[Check, Any]]) -> dict:
    table = raw.get(section, {})
    if not isinstance(table, Mapping):
        raise SweepConfigError(f"{section}: must be a table of keys, got {table!r}")
    _known(table, spec, f"{section}.")
    for name, value in table.items():
        problem = spec[name][0](value)
        if problem:
            raise SweepConfigError(f"{section}.{name}: {problem}, got {value!r}")
    return dict(table)


def _check_values(name: str, values: Any, search: str) -> None:
    check = SETTINGS[name][0]
    if isinstance(values, Mapping):
        kinds = ", ".join(f"{{{kind} = [low, high]}}" for kind in DISTRIBUTIONS)
        if search == "grid":
            raise SweepConfigError(f"space.{name}: a grid needs a list of values; ranges ({kinds}) are for "
                                   "search = \"random\"")
        if name not in ("lr", "lr_decay") or len(values) != 1 or next(iter(values)) not in DISTRIBUTIONS:
            raise SweepConfigError(f"space.{name}: a range is one of {kinds}, for lr and lr_decay only")
        (kind, bounds), = values.items()
        if not isinstance(bounds, list) or len(bounds) != 2 or any(check(b) for b in bounds) \
                or not bounds[0] < bounds[1]:
            raise SweepConfigError(f"space.{name}.{kind}: must be [low, high] with low < high, each a valid "
                                   f"{name}, got {bounds!r}")
        return
    if not isinstance(values, list) or not values:
        raise SweepConfigError(f"space.{name}: must be a non-empty list of values, got {values!r}")
    for k, value in enumerate(values):
        problem = check(value)
        if problem:
            raise SweepConfigError(f"space.{name}[{k}]: {problem}, got {value!r}")


def train_config(settings: Mapping[str, Any]) -> TrainConfig:
    """The :class:`TrainConfig` of one run's settings (shots apply to parameter-shift and spsa only)."""
    return TrainConfig.from_settings(settings)


def run_id(settings: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    """12 hex digits identifying a run: a hash of its settings and the data section."""
    text = json.dumps({"settings": settings, "data": data}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def prepare(data: Mapping[str, Any]) -> tuple[tuple[np.ndarray, ...], dict[str, dict[str, np.ndarray]]]:
    """The split as ``qstore train`` prepares it (:mod:`qstore.data.prepare`): arrays and the fitted preprocessing.

    Returns:
        ``((x_train [N, F], y_train [N], x_val [M, F], y_val [M]), extras)``.

    Raises:
        SweepConfigError: the dataset cannot be loaded (naming ``data.dataset`` and the reason).
    """
    config = build(DataConfig, data)
    try:
        split, block = load_dataset(config)
    except (DataError, OSError, ImportError) as error:
        raise SweepConfigError(f"data.dataset: {error}") from None
    return prepare_data(split, block, config.features)


def work(settings: Mapping[str, Any]) -> float:
    """A run's relative cost, for ordering runs only: epochs x layers x the state size 2**qubits x qubits
    (gates per layer), times 2 x the layer's parameters for parameter-shift (two circuits per parameter)."""
    config = train_config(settings)
    layer = config.quantum
    per_layer = layer.n_qubits * 2.0 ** layer.n_qubits
    shifts = 2 * layer.depth * layer.n_qubits if config.gradient == "parameter-shift" else 1
    return config.epochs * layer.depth * per_layer * shifts


def train_run(settings: Mapping[str, Any], arrays: tuple[np.ndarray, ...]) -> dict[str, Any]:
    """One run, on a worker: train the quantum model; returns its final state, history and timings."""
    config = train_config(settings)
    final: list[TrainState] = []
    start = time.perf_counter()
    result = train(build_model("quantum", arrays[0].shape[1], config), config, *arrays, on_epoch=final.append)
    return {"state": final[-1], "wall_s": time.perf_counter() - start, "circuits": result.circuits,
            "simulation_s": result.simulation_s}


@dataclasses.dataclass
class SweepResult:
    """A finished sweep.

    Attributes:
        rows: one per finished run of the config, best validation accuracy first: its id, settings,
            val_acc, train_acc, wall_s (training seconds on its worker), circuits, simulation_s, file.
        ran: runs trained by this call.
        skipped: runs whose result was already in the output folder.
        swept: the names of the swept settings.
        failures: one line per run that failed on its worker (it has no result file).
    """

    rows: list[dict[str, Any]]
    ran: int
    skipped: int
    swept: list[str]
    failures: list[str]


def run_sweep(config: SweepConfig, output: str | Path, *, scheduler: str | None = None, workers: int | None = None,
              client: Client | None = None, progress: bool = True) -> SweepResult:
    """Run every unfinished run of ``config`` on a Dask cluster; write results, table data, summary and plot.

    Args:
        config: the validated sweep.
        output: folder for ``runs/*.h5``, ``summary.json`` and ``sweep.png`` (created).
        scheduler: a Dask scheduler's address; None (and no ``client``) starts a local cluster.
        workers: worker processes of the local cluster (default: one per core).
        client: a Dask client to run on (left open), e.g. a :class:`~qstore.distributed.DaskSimulator`'s.
        progress: show a progress bar of runs.

    Raises:
        SweepConfigError: the data cannot be loaded (nothing has run then).
    """
    from tqdm import tqdm

    folder = Path(output) / "runs"
    all_settings = config.settings()
    ids = [run_id(settings, config.data) for settings in all_settings]
    done = {rid: _finished(folder / f"{rid}.h5", settings, config.data)
            for rid, settings in zip(ids, all_settings, strict=True)}
    pending = [(rid, settings) for rid, settings in zip(ids, all_settings, strict=True) if done[rid] is None]
    failures: list[str] = []
    if pending:
        arrays, extras = prepare(config.data)
        folder.mkdir(parents=True, exist_ok=True)
        connection = connect(scheduler, workers, client=client)
        client = connection.client
        try:
            data = share(client, arrays, "qstore-data")
            # a key of this sweep's own: a long-lived client may still hold an earlier sweep's run of this id
            sweep = uuid.uuid4().hex[:8]
            # the largest runs first: the small ones then fill the workers' last gaps, so the sweep ends
            # closer to its work / workers. Submitted in that order (an idle worker starts the first one as it
            # arrives) and with priorities to match (runs that arrive together start by priority)
            order = sorted(pending, key=lambda run: -work(run[1]))
            futures = {client.submit(train_run, settings, data, key=f"qstore-run-{rid}-{sweep}", pure=False,
                                     priority=len(order) - rank): (rid, settings)
                       for rank, (rid, settings) in enumerate(order)}
            with tqdm(total=len(ids), initial=len(ids) - len(pending), desc="sweep", unit="run",
                      disable=not progress) as bar:
                # a failed run stops no other
                for future in as_completed(list(futures), loop=client.loop, raise_errors=False):
                    rid, settings = futures[future]
                    if future.status == "error":
                        failures.append(f"run {rid} ({_describe(settings, config.space)}): {future.exception()}")
                    else:
                        done[rid] = _save(folder / f"{rid}.h5", rid, settings, config.data, future.result(), extras)
                    bar.update(1)
        finally:
            connection.close()
    rows = sorted((row for row in done.values() if row is not None), key=lambda r: (-r["val_acc"], r["wall_s"]))
    result = SweepResult(rows, len(pending) - len(failures), len(ids) - len(pending), list(config.space), failures)
    Path(output, "summary.json").write_text(json.dumps(dataclasses.asdict(result), indent=2))
    plot(result, Path(output) / "sweep.png")
    return result


def _describe(settings: Mapping[str, Any], space: Sequence[str] | Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={_cell(settings[name])}" for name in space)


def _row(rid: str, settings: Mapping[str, Any], metadata: Mapping[str, Any], path: Path) -> dict[str, Any]:
    return {"id": rid, "settings": dict(settings), **{k: metadata[k] for k in
                                                      ("val_acc", "train_acc", "wall_s", "circuits", "simulation_s")},
            "file": str(path)}


def _finished(path: Path, settings: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any] | None:
    """The table row of a run whose result file is complete and of these settings, else None."""
    if not path.exists():
        return None
    try:
        metadata = load_checkpoint(path).metadata
    except CheckpointError:
        return None  # not readable: run it again (the new file replaces it atomically)
    same = json.loads(json.dumps({"settings": settings, "data": data}))
    if metadata.get("kind") != RUN_KIND or {k: metadata.get(k) for k in same} != same:
        return None
    return _row(path.stem, settings, metadata, path)


def _save(path: Path, rid: str, settings: Mapping[str, Any], data: Mapping[str, Any], outcome: Mapping[str, Any],
          extras: Mapping[str, Any]) -> dict[str, Any]:
    """Write one run's result file (atomically: it exists only complete); return its table row."""
    state: TrainState = outcome["state"]
    last = state.history[-1]
    metadata = {"kind": RUN_KIND, "id": rid, "settings": dict(settings), "data": dict(data),
                "config": dataclasses.asdict(train_config(settings)), "val_acc": last["val_acc"],
                "train_acc": last["train_acc"], "wall_s": outcome["wall_s"], "circuits": outcome["circuits"],
                "simulation_s": outcome["simulation_s"]}
    save_checkpoint(path, weights=state.params, optimizer=state.optimizer, rng_state=state.rng, epoch=state.epoch,
                    metrics=state.history, metadata=metadata, extras=extras)
    return _row(rid, settings, metadata, path)


def format_table(result: SweepResult) -> str:
    """The runs as a text table: id, swept settings, accuracies, wall time, circuits; best first."""
    headers = ["run", *result.swept, "val acc", "train acc", "wall s", "circuits"]
    cells = [[row["id"], *(_cell(row["settings"][name]) for name in result.swept), f"{row['val_acc']:.3f}",
              f"{row['train_acc']:.3f}", f"{row['wall_s']:.2f}", f"{row['circuits']:,}"] for row in result.rows]
    widths = [max(len(h), *(len(c[k]) for c in cells)) if cells else len(h) for k, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)) for cell in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def plot(result: SweepResult, path: Path) -> None:
    """Validation accuracy against training wall time, one point per run, coloured by gradient method."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in CI
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for method in GRADIENT_METHODS:
        rows = [row for row in result.rows if row["settings"]["gradient"] == method]
        if rows:
            axis.scatter([row["wall_s"] for row in rows], [row["val_acc"] for row in rows], label=method, alpha=0.8)
    axis.set(xlabel="training wall time per run (s)", ylabel="validation accuracy", ylim=(0, 1.02),
             title=f"sweep: {len(result.rows)} runs")
    axis.legend(title="gradient", loc="lower right")
    # fixed margins for this fixed-size figure and its fixed labels, room for the note below: tight_layout took
    # 36-46 ms, a thirtieth of a short sweep on two workers
    figure.subplots_adjust(left=0.09, right=0.98, top=0.93, bottom=0.17)
    if result.rows:
        best = result.rows[0]
        axis.annotate("best", (best["wall_s"], best["val_acc"]), textcoords="offset points", xytext=(6, 6))
        figure.text(0.01, 0.01, f"best, run {best['id']}: {_describe(best['settings'], result.swept)}", fontsize=7,
                    wrap=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
