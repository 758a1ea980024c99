"""``qstore reproduce`` and ``qstore train``: train the quantum model and its classical baseline, print the report.

``qstore reproduce`` is the reference workload of shared/seed-benchmark.md run locally and done
properly: 1,000 images (synthetic by default, or a PetImages folder with ``--data``), split
800/200, batch 32, 5 epochs, the 8-qubit seed circuit with the image features really encoded and
every angle really trained, 1,024-shot parameter-shift gradients (``--grad adjoint`` for exact
ones), and the matched classical baseline trained on the same split. ``qstore train`` exposes the
same machinery with every setting of :class:`~qstore.ml.TrainConfig` and
:class:`~qstore.data.DataConfig` as an option (derived from their declarations).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..data import DataConfig, PreparedCache, Split, load_dataset, prepare_data
from ..ml import TrainConfig, TrainResult, TrainState, build_model, load_checkpoint, save_checkpoint, train
from ..settings import Setting, add_options, build, declared
from ..settings import values as settings_values

#: the reference run's wall time on IonQ's cloud simulator (seconds)
REFERENCE_SECONDS = 2288.4
#: ``qstore reproduce``: the reference's gradients, 1,024-shot parameter shift; every other setting at its default
REPRODUCE_DEFAULTS = {"gradient": "parameter-shift", "shots": 1024}
#: the settings ``qstore reproduce`` lets a user change (the rest define the reference workload)
REPRODUCE_OPTIONS = ("gradient", "shots", "epochs", "lr", "features", "backend", "seed")
#: the reference's data: its own PetImages photos, or the synthetic images shaped like them
REFERENCE_DATASETS = ("synthetic", "petimages")
#: the split sizes that ``n_train`` and ``n_val`` None mean for images (:func:`qstore.data.load_dataset`)
IMAGE_SPLIT = {"n_train": 800, "n_val": 200}
#: settings that change neither the data's size nor the work done per sample, so the wall time stays comparable
WORK_NEUTRAL = ("lr", "lr_decay", "backend", "seed")
#: the run (and checkpoint) name of the quantum model trained without noise beside a ``--noise`` run
NOISELESS = "noiseless"
#: the data line's note when the prepared data came from the cache (:class:`~qstore.data.PreparedCache`)
CACHED_NOTE = "prepared data read from"
#: unreadable files the console names before "and K more" (the ``--json`` summary lists them all)
SKIPPED_SHOWN = 5


class UsageError(ValueError):
    """A command-line value that cannot be used."""


def settings() -> list[tuple[Setting, Any]]:
    """Every data and training setting once, with its default.

    A name both configs declare (``seed``) is one option that sets both; its help joins theirs.
    """
    unique: dict[str, tuple[Setting, Any]] = {}
    for spec, default in [*declared(DataConfig), *declared(TrainConfig)]:
        if spec.name in unique:
            first, first_default = unique[spec.name]
            if first_default != default:
                raise TypeError(f"the setting {spec.name} has two defaults, {first_default!r} and {default!r}")
            spec = dataclasses.replace(first, help=f"{first.help}; {spec.help}")
        unique[spec.name] = (spec, default)
    return list(unique.values())


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """The ``reproduce`` and ``train`` subcommands."""
    reproduce = commands.add_parser("reproduce", help="the reference training run, locally (the main job)")
    reproduce.add_argument("--data", metavar="PATH", help="a PetImages folder (Cat/, Dog/), not synthetic images")
    add_options(reproduce, [(spec, REPRODUCE_DEFAULTS.get(spec.name, default)) for spec, default in settings()
                            if spec.name in REPRODUCE_OPTIONS])
    _output_options(reproduce)
    training = commands.add_parser("train", help="train a hybrid model with any settings")
    add_options(training, settings())
    _output_options(training)


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="qstore-output", help="folder for checkpoints and the plot")
    parser.add_argument("--json", metavar="PATH",
                        help="write a summary (accuracies, wall time, circuits, skipped files) here")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoints in --output")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--no-cache", dest="cache", action="store_false",
                        help="prepare the data afresh, neither reading nor writing the prepared-data cache "
                        "($QSTORE_CACHE_DIR/data, default ~/.cache/qstore/data)")


def configs(args: argparse.Namespace) -> tuple[DataConfig, TrainConfig]:
    """The data and training configs of a parsed ``reproduce`` or ``train`` command line."""
    values = {spec.name: getattr(args, spec.name) for spec, _ in settings() if hasattr(args, spec.name)}
    if getattr(args, "data", None):
        values["dataset"] = f"petimages:{args.data}"
    return build(DataConfig, values), TrainConfig.from_settings(values)


def is_reference_workload(data: DataConfig, config: TrainConfig) -> bool:
    """Whether a run does the reference's work, so that comparing its wall time with the reference's means something.

    It does when its data is one of :data:`REFERENCE_DATASETS` and every other setting is the reference's,
    which are the configs' defaults (``n_train``/``n_val`` None, i.e. the :data:`IMAGE_SPLIT` 800/200) with
    the gradients of :data:`REPRODUCE_DEFAULTS`; the :data:`WORK_NEUTRAL` settings may differ. So
    ``qstore reproduce`` on its defaults does, and so does ``qstore train`` with the same settings; either
    with fewer epochs or exact gradients does not.
    """
    reference = {spec.name: REPRODUCE_DEFAULTS.get(spec.name, default) for spec, default in settings()} | IMAGE_SPLIT
    values = settings_values(data) | settings_values(config)
    values |= {name: values[name] or size for name, size in IMAGE_SPLIT.items()}  # None: 800/200 for images
    return data.dataset.partition(":")[0] in REFERENCE_DATASETS and all(
        values[name] == value for name, value in reference.items() if name not in ("dataset", *WORK_NEUTRAL))


def skipped_files(data: DataConfig, split: Split) -> list[str]:
    """The files the split found unreadable and left out, relative to the dataset's folder where they are in it."""
    kind, _, argument = data.dataset.partition(":")
    root = Path(argument) if kind == "petimages" else None
    names = []
    for path, _reason in split.skipped:
        names.append(str(path.relative_to(root)) if root is not None and path.is_relative_to(root) else str(path))
    return names


def _skipped_note(names: list[str], shown: int = SKIPPED_SHOWN) -> str:
    """``", 7 unreadable file(s) skipped: a, b, c, d, e and 2 more"``, or ``""`` when none was."""
    if not names:
        return ""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f", {len(names)} unreadable file(s) skipped: {', '.join(names[:shown])}{more}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train the quantum model and its classical baseline as ``args`` say; print the report; return the summary.

    Everything is printed while no progress bar is open: the data and model lines before training, the
    tables and the rest after both bars are cleared (a warning raised during training is written above the bar).
    """
    data, config = configs(args)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    split, block = load_dataset(data)
    cache = PreparedCache() if args.cache else None
    arrays, extras = prepare_data(split, block, data.features, cache)
    data_seconds = time.perf_counter() - start
    cached = cache is not None and cache.hits > 0
    skipped = skipped_files(data, split)
    print(f"data: {data.dataset}, {len(split.train)} train / {len(split.val)} validation{_skipped_note(skipped)}"
          f"{f' ({CACHED_NOTE} {cache.folder})' if cached else ''}")
    shots = f" with {config.shots} shots" if config.shots else ""
    noise = f", under IonQ's {config.noise} noise model" if config.noise else ""
    print(f"model: {config.quantum.n_qubits} qubits, {config.quantum.encoding} encoding, depth "
          f"{config.quantum.depth}, {config.quantum.entanglement} entanglement, gradients {config.gradient}{shots}"
          f"{noise}", flush=True)  # before the bars (on stderr) start, even when stdout is a pipe
    runs = {"quantum": ("quantum", config), "classical": ("classical", config)}
    if config.noise:  # the same run without noise: what the noise costs
        runs = {"quantum": runs["quantum"], NOISELESS: ("quantum", dataclasses.replace(config, noise=None)),
                "classical": runs["classical"]}
    # epochs read back from checkpoints are not in this command's wall time
    resumed = args.resume and any((output / f"{name}.h5").exists() for name in runs)
    results = {name: _run_model(name, kind, run_config, arrays, output, extras, args.resume, not args.quiet)
               for name, (kind, run_config) in runs.items()}
    quantum, baseline = results["quantum"], results["classical"]
    quantum_runs = [result for name, result in results.items() if name != "classical"]
    simulation = sum(result.simulation_s for result in quantum_runs)
    wall = time.perf_counter() - start
    print(_table(quantum.history, f"\nquantum model{f' under {config.noise} noise' if config.noise else ''}"))
    if config.noise:
        print(_table(results[NOISELESS].history, "\nquantum model without noise (same data, seed and settings)"))
    print(_table(baseline.history, "\nclassical baseline (the quantum layer replaced by a dense layer of equal width)"))
    if config.noise:
        print(_noise_table(config.noise, results))
    print(f"\ncircuits executed: {sum(result.circuits for result in quantum_runs):,}")
    print(f"wall time: {wall:.2f} s = data preparation {data_seconds:.2f} s + circuit simulation "
          f"{simulation:.2f} s + classical work "
          f"{sum(result.classical_s for result in quantum_runs) + baseline.total_s:.2f} s")
    if is_reference_workload(data, config):
        if resumed:
            print(f"reference run on IonQ's cloud simulator: {REFERENCE_SECONDS:,.0f} s; this run resumed from "
                  "checkpoints, so its wall time is not the whole run's and is not compared")
        else:
            print(f"reference run on IonQ's cloud simulator: {REFERENCE_SECONDS:,.0f} s; this run: "
                  f"{REFERENCE_SECONDS / wall:,.0f}x faster")
    _plot(results, output / "curves.png")
    checkpoints = ", ".join(str(output / f"{name}.h5") for name in results)
    print(f"checkpoints and metrics: {checkpoints}; plot: {output / 'curves.png'}")
    summary = {
        "val_acc": quantum.history[-1]["val_acc"], "train_acc": quantum.history[-1]["train_acc"],
        "baseline_val_acc": baseline.history[-1]["val_acc"], "wall_s": wall,
        "circuits": sum(result.circuits for result in quantum_runs),
        "seconds": {"data": data_seconds, "simulation": simulation,
                    "classical": sum(result.classical_s for result in quantum_runs) + baseline.total_s},
        "skipped": skipped, "noise": config.noise,
    }
    if config.noise:
        noiseless = results[NOISELESS].history[-1]["val_acc"]
        summary |= {"noiseless_val_acc": noiseless, "noise_cost": noiseless - quantum.history[-1]["val_acc"]}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return summary


def _noise_table(noise: str, results: dict[str, TrainResult]) -> str:
    """The final validation accuracy and loss of the noisy run, the noiseless run and the baseline, and the cost."""
    rows = [(f"quantum, {noise} noise", results["quantum"]), ("quantum, noiseless", results[NOISELESS]),
            ("classical baseline", results["classical"])]
    lines = ["\naccuracy cost of noise (last epoch; the noiseless run has the same data, seed and settings)",
             f"{'model':<24}  {'val acc':>7}  {'val loss':>8}"]
    lines += [f"{label:<24}  {result.history[-1]['val_acc']:>7.3f}  {result.history[-1]['val_loss']:>8.3f}"
              for label, result in rows]
    cost = results[NOISELESS].history[-1]["val_acc"] - results["quantum"].history[-1]["val_acc"]
    lines.append(f"{'cost of ' + noise + ' noise':<24}  {cost:>+7.3f}  (noiseless minus noisy val acc)")
    return "\n".join(lines)


def _table(history: list[dict[str, float]], title: str) -> str:
    lines = [title, f"{'epoch':>5}  {'train loss':>10}  {'train acc':>9}  {'val loss':>8}  {'val acc':>7}  {'lr':>8}"]
    for row in history:
        lines.append(f"{row['epoch']:>5}  {row['train_loss']:>10.3f}  {row['train_acc']:>9.3f}  "
                     f"{row['val_loss']:>8.3f}  {row['val_acc']:>7.3f}  {row['lr']:>8.5f}")
    return "\n".join(lines)


def _plot(results: dict[str, TrainResult], path: Path) -> None:
    import matplotlib.pyplot as plt

    figure = curves_figure(results)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def curves_figure(results: dict[str, TrainResult]) -> Any:
    """The loss and accuracy curves of every model by epoch (a matplotlib figure, integer epoch ticks)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in CI
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for name, result in results.items():
        epochs = [row["epoch"] for row in result.history]
        for axis, metric in ((loss_axis, "loss"), (acc_axis, "acc")):
            axis.plot(epochs, [row[f"train_{metric}"] for row in result.history], "--", label=f"{name} train")
            axis.plot(epochs, [row[f"val_{metric}"] for row in result.history], "-o", label=f"{name} val")
    loss_axis.set(xlabel="epoch", ylabel="binary cross-entropy", title="loss")
    acc_axis.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1))
    for axis in (loss_axis, acc_axis):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs 1, 2, 3, not 1.0, 1.5, 2.0
    acc_axis.legend()
    figure.tight_layout()
    return figure


def _run_model(name: str, kind: str, config: TrainConfig, arrays: tuple[np.ndarray, ...], output: Path,
               extras: dict[str, dict[str, np.ndarray]], resume: bool, progress: bool) -> TrainResult:
    """Train one model (``kind``), checkpointing every epoch to ``output/{name}.h5`` (and resuming from it)."""
    from tqdm import tqdm

    path = output / f"{name}.h5"
    metadata = {"kind": kind, "config": dataclasses.asdict(config)}
    state = None
    if resume and path.exists():
        saved = load_checkpoint(path)
        if saved.metadata.get("config") != json.loads(json.dumps(metadata["config"])):
            raise UsageError(f"{path} was written with different settings; remove it or drop --resume")
        state = TrainState(saved.epoch, saved.weights, saved.optimizer, saved.rng_state, saved.metrics)

    def checkpoint(current: TrainState) -> None:
        save_checkpoint(path, weights=current.params, optimizer=current.optimizer, rng_state=current.rng,
                        epoch=current.epoch, metrics=current.history, metadata=metadata,
                        extras=extras)

    def above_the_bar(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      file: Any = None, line: str | None = None) -> None:
        # a warning written straight to stderr would land in the middle of the bar's line
        tqdm.write(warnings.formatwarning(message, category, filename, lineno, line).rstrip("\n"), file=sys.stderr)

    model = build_model(kind, arrays[0].shape[1], config)
    with warnings.catch_warnings(), tqdm(total=1, desc=f"{name:>9}", unit="batch", disable=not progress,
                                         leave=False) as bar:
        if progress:
            warnings.showwarning = above_the_bar  # restored by catch_warnings

        def step(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        return train(model, config, *arrays, resume=state, on_epoch=checkpoint, on_step=step)
