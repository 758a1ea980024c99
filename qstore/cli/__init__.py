"""The ``qstore`` command: ``reproduce``, ``train``, ``sweep``, ``compare`` and ``serve``.

``qstore reproduce`` is the reference workload of ../shared/seed-benchmark.md
run locally and done properly: 1,000 images (synthetic by default, or a
PetImages folder with ``--data``), split 800/200, batch 32, 5 epochs, the
8-qubit seed circuit with the image features really encoded and every angle
really trained, 1,024-shot parameter-shift gradients (``--grad adjoint`` for
exact ones), and the matched classical baseline trained on the same split.
``qstore train`` exposes the same machinery with every option; ``qstore
sweep CONFIG`` trains many settings on a Dask cluster (:mod:`qstore.ml.sweep`). ``qstore
compare`` runs the same circuits in process and through an IonQ-compatible
server (:mod:`qstore.execution.compare`).

Bad input (a missing folder, impossible split sizes, unknown options, a
corrupt checkpoint) ends with a one-line message and exit status 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data import DataError, Preprocessor, Split, digits, load_petimages, synthetic
from ..ionq.client import IonQError
from ..ml.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ..ml.layers import BASES, ENCODINGS, ENTANGLEMENTS, GRADIENT_METHODS, QuantumLayerConfig
from ..ml.train import TrainConfig, TrainResult, TrainState, build_model, train

#: the reference run's wall time on IonQ's cloud simulator (seconds)
REFERENCE_SECONDS = 2288.4
#: 180 x 180 images are averaged over 10 x 10 blocks before the PCA (18 x 18 x 3 values)
IMAGE_BLOCK = 10


class UsageError(ValueError):
    """A command-line value that cannot be used."""


def load_dataset(spec: str, n_train: int | None, n_val: int | None, seed: int) -> tuple[Split, int]:
    """The split named by ``spec`` and the preprocessing block size suited to its images.

    Split sizes default to the reference's 800/200 for images, 80/20 % for digits.
    """
    kind, _, argument = spec.partition(":")
    if kind == "synthetic":
        # rendered as float32 and pooled as is: quantising to uint8 first would only cost time
        return synthetic(n_train or 800, n_val or 200, seed, dtype="float32"), IMAGE_BLOCK
    if kind == "petimages":
        if not argument:
            raise UsageError("--dataset petimages:PATH needs the folder holding Cat/ and Dog/")
        return load_petimages(argument, n_train or 800, n_val or 200, seed), IMAGE_BLOCK
    if kind == "digits":
        try:
            negative, positive = (int(v) for v in (argument or "3,8").split(","))
        except ValueError:
            raise UsageError(f"--dataset digits:A,B needs two digits, got {spec!r}") from None
        return digits(negative, positive, n_train, n_val, seed), 1
    raise UsageError(f"unknown dataset {spec!r}; use synthetic, petimages:PATH or digits:A,B")


def prepare_data(split: Split, block: int, features: int
                 ) -> tuple[tuple[np.ndarray, ...], dict[str, dict[str, np.ndarray]]]:
    """The model's inputs from a split, as ``qstore train`` and ``qstore sweep`` prepare them.

    Args:
        split: from :func:`load_dataset`.
        block: the preprocessing block size :func:`load_dataset` gives with it.
        features: the preprocessor's output width.

    Returns:
        ``((x_train [N, F], y_train [N], x_val [M, F], y_val [M]), extras)``: standardized features
        and float labels, and the fitted preprocessing (``preprocessor`` and ``standardize`` states).

    Raises:
        DataError: the split cannot be preprocessed so (an unreadable image, too few samples for ``features``).
    """
    preprocessor = Preprocessor(n_features=features, block=block)
    x_train = preprocessor.fit_transform(split.train)
    x_val, y_val = split.val.arrays(preprocessor.transform)
    # the first dense layer learns faster from centred, unit-scale inputs (statistics of the training split)
    mean, scale = x_train.mean(axis=0), x_train.std(axis=0) + 1e-12
    arrays = ((x_train - mean) / scale, split.train.labels.astype(np.float64), (x_val - mean) / scale,
              y_val.astype(np.float64))
    # what turns an image into the model's input, saved with the weights so a checkpoint is usable on its own
    return arrays, {"preprocessor": preprocessor.state(), "standardize": {"mean": mean, "scale": scale}}


def _table(history: list[dict[str, float]], title: str) -> str:
    lines = [title, f"{'epoch':>5}  {'train loss':>10}  {'train acc':>9}  {'val loss':>8}  {'val acc':>7}  {'lr':>8}"]
    for row in history:
        lines.append(f"{row['epoch']:>5}  {row['train_loss']:>10.3f}  {row['train_acc']:>9.3f}  "
                     f"{row['val_loss']:>8.3f}  {row['val_acc']:>7.3f}  {row['lr']:>8.5f}")
    return "\n".join(lines)


def _plot(results: dict[str, TrainResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in CI
    import matplotlib.pyplot as plt

    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for name, result in results.items():
        epochs = [row["epoch"] for row in result.history]
        for axis, metric in ((loss_axis, "loss"), (acc_axis, "acc")):
            axis.plot(epochs, [row[f"train_{metric}"] for row in result.history], "--", label=f"{name} train")
            axis.plot(epochs, [row[f"val_{metric}"] for row in result.history], "-o", label=f"{name} val")
    loss_axis.set(xlabel="epoch", ylabel="binary cross-entropy", title="loss")
    acc_axis.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1))
    acc_axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _run_model(kind: str, config: TrainConfig, arrays: tuple[np.ndarray, ...], output: Path,
               extras: dict[str, dict[str, np.ndarray]], resume: bool, progress: bool) -> TrainResult:
    """Train one model, checkpointing every epoch to ``output/{kind}.h5`` (and resuming from it)."""
    from tqdm import tqdm

    path = output / f"{kind}.h5"
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

    model = build_model(kind, arrays[0].shape[1], config)
    with tqdm(total=1, desc=f"{kind:>9}", unit="batch", disable=not progress, leave=False) as bar:
        def step(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        return train(model, config, *arrays, resume=state, on_epoch=checkpoint, on_step=step)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train the quantum model and its classical baseline as ``args`` say; print the report; return the summary."""
    config = TrainConfig(
        quantum=QuantumLayerConfig(n_qubits=args.qubits, depth=args.depth, entanglement=args.entanglement,
                                   encoding=args.encoding, reupload=args.reupload, bases=tuple(args.bases)),
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_decay=args.lr_decay,
        gradient=args.grad, shots=None if args.grad == "adjoint" else args.shots, backend=args.backend,
        seed=args.seed)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    split, block = load_dataset(args.dataset, args.n_train, args.n_val, args.seed)
    arrays, extras = prepare_data(split, block, args.features)
    data_seconds = time.perf_counter() - start
    results = {kind: _run_model(kind, config, arrays, output, extras, args.resume, not args.quiet)
               for kind in ("quantum", "classical")}
    quantum, baseline = results["quantum"], results["classical"]
    wall = time.perf_counter() - start
    print(f"data: {args.dataset}, {len(split.train)} train / {len(split.val)} validation"
          + (f", {len(split.skipped)} unreadable file(s) skipped" if split.skipped else ""))
    shots = f" with {config.shots} shots" if config.shots else ""
    print(f"model: {config.quantum.n_qubits} qubits, {config.quantum.encoding} encoding, depth "
          f"{config.quantum.depth}, {config.quantum.entanglement} entanglement, gradients {config.gradient}{shots}")
    print(_table(quantum.history, "\nquantum model"))
    print(_table(baseline.history, "\nclassical baseline (the quantum layer replaced by a dense layer of equal width)"))
    print(f"\ncircuits executed: {quantum.circuits:,}")
    print(f"wall time: {wall:.2f} s = data preparation {data_seconds:.2f} s + circuit simulation "
          f"{quantum.simulation_s:.2f} s + classical work {quantum.classical_s + baseline.total_s:.2f} s")
    print(f"reference run on IonQ's cloud simulator: {REFERENCE_SECONDS:,.0f} s; this run: "
          f"{REFERENCE_SECONDS / wall:,.0f}x faster")
    _plot(results, output / "curves.png")
    print(f"checkpoints and metrics: {output / 'quantum.h5'}, {output / 'classical.h5'}; plot: {output / 'curves.png'}")
    summary = {
        "val_acc": quantum.history[-1]["val_acc"], "train_acc": quantum.history[-1]["train_acc"],
        "baseline_val_acc": baseline.history[-1]["val_acc"], "wall_s": wall, "circuits": quantum.circuits,
        "seconds": {"data": data_seconds, "simulation": quantum.simulation_s,
                    "classical": quantum.classical_s + baseline.total_s},
    }
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return summary


def _training_options(parser: argparse.ArgumentParser, *, reproduce: bool) -> None:
    if reproduce:
        parser.add_argument("--data", metavar="PATH", help="a PetImages folder (Cat/, Dog/), not synthetic images")
    else:
        parser.add_argument("--dataset", default="synthetic",
                            help="synthetic, petimages:PATH or digits:A,B (default: %(default)s)")
        parser.add_argument("--qubits", type=int, default=8, help="default: %(default)s")
        parser.add_argument("--depth", type=int, default=2, help="trainable layers (default: %(default)s)")
        parser.add_argument("--entanglement", choices=ENTANGLEMENTS, default="full")
        parser.add_argument("--encoding", choices=ENCODINGS, default="angle",
                            help="angle: one RY per qubit; amplitude: 2**qubits amplitudes as the initial state")
        parser.add_argument("--reupload", action="store_true", help="re-encode the data before every layer")
        parser.add_argument("--bases", nargs="+", choices=BASES, default=["Z"], help="measurement bases")
        parser.add_argument("--n-train", type=int, help="training samples (default: 800; digits: 80 %%)")
        parser.add_argument("--n-val", type=int, help="validation samples (default: 200; digits: 20 %%)")
        parser.add_argument("--batch-size", type=int, default=32)
        parser.add_argument("--lr-decay", type=float, default=0.95)
    parser.add_argument("--grad", choices=GRADIENT_METHODS, default="parameter-shift" if reproduce else "adjoint",
                        help="gradient method of the quantum layer (default: %(default)s)")
    parser.add_argument("--shots", type=int, default=1024, help="shots per circuit unless --grad adjoint")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.05, help="Adam step size (default: %(default)s)")
    parser.add_argument("--features", type=int, default=16, help="PCA features per image (default: %(default)s)")
    parser.add_argument("--backend", default="auto", help="qsim_core backend (default: the fastest here)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="qstore-output", help="folder for checkpoints and the plot")
    parser.add_argument("--json", metavar="PATH", help="write a summary (accuracies, wall time, circuits) here")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoints in --output")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _compare_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default="local",
                        help="'local' (a server started here), a server URL, or 'ionq' (IonQ's cloud, needs "
                             "IONQ_API_KEY) (default: %(default)s)")
    parser.add_argument("--api-key", help="API key of a --target URL (default: $IONQ_API_KEY)")
    parser.add_argument("--profile", help="latency profile of the local server: ionq-cloud (default), none, or a "
                                          "profile JSON file")
    parser.add_argument("--circuits", type=int, default=20,
                        help="seed circuits with random inputs (default: %(default)s)")
    parser.add_argument("--shots", type=int, default=1024, help="default: %(default)s")
    parser.add_argument("--max-concurrent", type=int, default=10, help="jobs in flight (default: %(default)s)")
    parser.add_argument("--circuits-per-job", type=int, default=10, help="default: %(default)s")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one job may take (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="qstore-compare", help="folder for compare.json and compare.png")


def _compare(args: argparse.Namespace) -> None:
    from ..execution.compare import compare, format_report, save

    comparison = compare(args.target, api_key=args.api_key, profile=args.profile, circuits=args.circuits,
                         shots=args.shots, max_concurrent=args.max_concurrent,
                         circuits_per_job=args.circuits_per_job, seed=args.seed, timeout=args.timeout)
    print(format_report(comparison))
    json_path, png_path = save(comparison, Path(args.output))
    print(f"wrote {json_path} and {png_path}")


def parser() -> argparse.ArgumentParser:
    """The ``qstore`` argument parser."""
    top = argparse.ArgumentParser(prog="qstore", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)
    reproduce = commands.add_parser("reproduce", help="the reference training run, locally (the main job)")
    _training_options(reproduce, reproduce=True)
    training = commands.add_parser("train", help="train a hybrid model with any settings")
    _training_options(training, reproduce=False)
    sweep = commands.add_parser("sweep", help="grid or random search over training settings on a Dask cluster")
    sweep.add_argument("config", help="a JSON or TOML sweep config (format: python -m pydoc qstore.ml.sweep)")
    sweep.add_argument("--scheduler", metavar="ADDRESS", help="a Dask scheduler (default: a local cluster)")
    sweep.add_argument("--workers", type=int, help="worker processes of the local cluster (default: one per core)")
    sweep.add_argument("--output", default="qstore-sweep", help="folder for runs/*.h5, summary.json, sweep.png")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    _compare_options(commands.add_parser("compare", help="the same circuits in process and through an IonQ-"
                                                         "compatible server: latency, time breakdown, agreement"))
    commands.add_parser("serve", help="a local IonQ-compatible server (qstore serve --help)", add_help=False)
    return top


def _reproduce_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """The reference workload's fixed settings for ``qstore reproduce``."""
    return argparse.Namespace(
        **vars(args), dataset=f"petimages:{args.data}" if args.data else "synthetic", qubits=8, depth=2,
        entanglement="full", encoding="angle", reupload=False, bases=["Z"], n_train=800, n_val=200, batch_size=32,
        lr_decay=0.95)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qstore`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        from .serve import main as serve

        serve(argv[1:])
        return 0
    args = parser().parse_args(argv)
    if args.command == "reproduce":
        args = _reproduce_defaults(args)
    try:
        if args.command == "compare":
            _compare(args)
        elif args.command == "sweep":
            from ..ml.sweep import command as sweep  # imports Dask only for this command

            return sweep(args)
        else:
            run(args)
    except (DataError, CheckpointError, UsageError, ValueError, OSError, IonQError) as error:
        print(f"qstore {args.command}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
