"""The capstone experiment: a "bag of tricks" ablation on one small CNN.

One convolutional network (:func:`nnh.models.cnn`) on the scikit-learn digits
(:func:`nnh.data.digits`) is trained eight ways: the **baseline** (Adam at a
constant rate, plain cross-entropy), the baseline plus **one** trick of the
book at a time, and **all** tricks together — the one-at-a-time ablation of
He et al., *Bag of Tricks for Image Classification with Convolutional Neural
Networks* (CVPR 2019), scaled down to a laptop.  Every configuration is
trained from several seeds; :func:`summarize` gives the mean and standard
deviation of the test accuracy, the expected calibration error, the mean
confidence and the training time.

The tricks and their chapters:

=====================  =============================================  =======================
configuration          what changes                                   chapter
=====================  =============================================  =======================
``+ warm-up/cosine``   linear warm-up, then cosine decay to 0         learning-rate schedules
``+ L2``               ``keras.regularizers.L2`` on every kernel      weight penalties
``+ dropout``          ``keras.layers.Dropout`` before the output     dropout
``+ augmentation``     each image shifted by up to one pixel, p 0.5   data augmentation
``+ label smoothing``  ``CategoricalCrossentropy(label_smoothing)``   data augmentation
``+ mixup``            mixup of each batch, ``λ ~ Beta(α, α)``        data augmentation
=====================  =============================================  =======================

The whole grid is a command::

    nnh ablation --seeds 5 --out results.json

which prints the table and writes every run and the summary as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import keras
import numpy as np

from nnh import _validate, augment, data, metrics, models, schedules, training

TRICKS = ("schedule", "l2", "dropout", "augmentation", "label_smoothing", "mixup")
CONFIGS: dict[str, tuple[str, ...]] = {
    "baseline": (),
    "+ warm-up/cosine": ("schedule",),
    "+ L2": ("l2",),
    "+ dropout": ("dropout",),
    "+ augmentation": ("augmentation",),
    "+ label smoothing": ("label_smoothing",),
    "+ mixup": ("mixup",),
    "all": TRICKS,
}
"""Configuration name → the tricks it adds to the baseline."""

METRICS = ("accuracy", "ece", "confidence", "nll", "seconds")
"""What :func:`run` measures on the test set: accuracy, expected calibration error,
mean confidence, cross-entropy (negative log-likelihood) and training time in seconds."""


@dataclass(frozen=True)
class Settings:
    """Every hyper-parameter of the ablation (the defaults are the chapter's).

    The baseline uses ``learning_rate`` as a constant Adam rate; the schedule
    warms up linearly to the same rate in ``warmup_epochs`` and then decays it
    to 0 along a cosine (:class:`nnh.schedules.WarmupCosine`).
    """

    n_train: int | None = 500
    epochs: int = 60
    batch_size: int = 64
    learning_rate: float = 3e-3
    filters: tuple[int, ...] = (8, 16)
    dense: int = 32
    warmup_epochs: int = 2
    l2: float = 1e-4
    dropout: float = 0.3
    shift: int = 1
    shift_probability: float = 0.5
    label_smoothing: float = 0.1
    mixup_alpha: float = 0.2
    n_bins: int = 10

    def __post_init__(self):
        if self.n_train is not None:
            _validate.integer_at_least("n_train", self.n_train, 10)
        _validate.integer_at_least("epochs", self.epochs, 1)
        _validate.integer_at_least("batch_size", self.batch_size, 1)
        _validate.positive("learning_rate", self.learning_rate)
        _validate.integer_at_least("warmup_epochs", self.warmup_epochs, 0)
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs={self.epochs}), got {self.warmup_epochs}")
        _validate.non_negative("l2", self.l2)
        _validate.in_half_open_unit("dropout", self.dropout, low_open=False)
        _validate.integer_at_least("shift", self.shift, 1)
        _validate.unit_interval("shift_probability", self.shift_probability)
        _validate.unit_interval("label_smoothing", self.label_smoothing)
        _validate.positive("mixup_alpha", self.mixup_alpha)
        _validate.integer_at_least("n_bins", self.n_bins, 1)


@dataclass
class Run:
    """One trained configuration: its test-set measurements and predictions."""

    config: str
    seed: int
    accuracy: float
    ece: float
    confidence: float
    nll: float
    seconds: float
    probs: np.ndarray = field(repr=False)  # (n_test, 10) softmax outputs on the test set
    labels: np.ndarray = field(repr=False)  # (n_test,) true classes

    def record(self) -> dict:
        """The measurements as a JSON-ready dict (without the predictions)."""
        return {"config": self.config, "seed": self.seed, **{m: float(getattr(self, m)) for m in METRICS}}


def check_configs(configs: Iterable[str]) -> list[str]:
    """``configs`` as a list, each a key of :data:`CONFIGS` (else a ``ValueError`` naming them)."""
    configs = list(configs)
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown or not configs:
        raise ValueError(f"configs must be a non-empty selection of {list(CONFIGS)}, got {configs!r}")
    return configs


def load_data(settings: Settings = Settings()) -> data.Split:
    """The digits as 8×8×1 images: ``settings.n_train`` training examples, the 450 test digits."""
    return data.digits(flat=False, n_train=settings.n_train)


def run(config: str, seed: int, settings: Settings = Settings(), split: data.Split | None = None) -> Run:
    """Train configuration ``config`` (a key of :data:`CONFIGS`) from ``seed`` and measure it.

    Example:
        >>> r = run("baseline", seed=0, settings=Settings(epochs=2, warmup_epochs=1))
        >>> r.config, r.probs.shape, 0 <= r.ece <= 1
        ('baseline', (450, 10), True)
    """
    (config,) = check_configs([config])
    seed = _validate.integer_at_least("seed", seed, 0)
    split = load_data(settings) if split is None else split
    tricks = set(CONFIGS[config])
    s = settings

    rate = s.learning_rate
    if "schedule" in tricks:
        per_epoch = training.steps_per_epoch(len(split.x_train), s.batch_size)
        rate = schedules.WarmupCosine(s.warmup_epochs * per_epoch, s.epochs * per_epoch, s.learning_rate)
    regularizer = keras.regularizers.L2(s.l2) if "l2" in tricks else None
    drop = s.dropout if "dropout" in tricks else 0.0
    transform = None
    if "augmentation" in tricks:
        transform = augment.apply_with_probability(
            lambda x, rng: augment.random_shift(x, s.shift, rng), p=s.shift_probability)

    result = augment.fit_augmented(
        lambda: models.cnn(split.x_train.shape[1:], filters=s.filters, dense=s.dense, dropout=drop,
                           kernel_regularizer=regularizer),
        split, rate, epochs=s.epochs, batch_size=s.batch_size, optimizer="adam", seed=seed,
        transform=transform,
        mixup_alpha=s.mixup_alpha if "mixup" in tricks else None,
        label_smoothing=s.label_smoothing if "label_smoothing" in tricks else 0.0,
    )
    probs = training.predict(result.model, split.x_test)
    return Run(config=config, seed=seed,
               accuracy=metrics.accuracy(probs, split.y_test),
               ece=metrics.expected_calibration_error(probs, split.y_test, s.n_bins),
               confidence=metrics.mean_confidence(probs),
               nll=metrics.negative_log_likelihood(probs, split.y_test), seconds=result.seconds,
               probs=probs, labels=np.asarray(split.y_test))


def run_grid(configs: Iterable[str] = CONFIGS, seeds: Sequence[int] = (0, 1, 2),
             settings: Settings = Settings(), *, progress: bool = False) -> list[Run]:
    """:func:`run` for every configuration and seed, returned configuration by configuration.

    They are trained seed by seed (every configuration of one seed, then the next
    seed), so that a change of the machine's speed during the grid (another job
    starting) falls on all configurations alike and the training times stay
    comparable.  The order changes nothing else: each run seeds itself.

    With ``progress=True`` a progress bar (runs done / total, ETA) goes to stderr.
    """
    configs = check_configs(configs)
    seeds = [_validate.integer_at_least("seed", s, 0) for s in seeds]
    if not seeds:
        raise ValueError("seeds must hold at least one seed, got []")
    split = load_data(settings)
    jobs = [(c, s) for s in seeds for c in configs]
    if progress:
        from tqdm.auto import tqdm

        jobs = tqdm(jobs, desc="ablation", unit="run", file=sys.stderr, dynamic_ncols=True)
    runs = []
    for config, seed in jobs:
        if progress:
            jobs.set_postfix_str(f"{config}, seed {seed}")
        runs.append(run(config, seed, settings, split))
    return sorted(runs, key=lambda r: (configs.index(r.config), seeds.index(r.seed)))


def summarize(runs: Iterable[Run]) -> dict[str, dict[str, tuple[float, float]]]:
    """Configuration → metric → ``(mean, standard deviation)`` over the seeds (``ddof=0``),
    configurations in the order of :data:`CONFIGS`."""
    by_config: dict[str, list[Run]] = {}
    for r in runs:
        by_config.setdefault(r.config, []).append(r)
    order = [c for c in CONFIGS if c in by_config]
    return {c: {m: (float(np.mean([getattr(r, m) for r in by_config[c]])),
                    float(np.std([getattr(r, m) for r in by_config[c]])))
                for m in METRICS} for c in order}


def per_seed(runs: Iterable[Run], config: str, metric: str) -> np.ndarray:
    """``metric`` of ``config`` for each seed, in increasing seed order."""
    chosen = sorted((r for r in runs if r.config == config), key=lambda r: r.seed)
    if not chosen:
        raise ValueError(f"config {config!r} has no runs")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return np.array([getattr(r, metric) for r in chosen])


def paired_difference(runs: Iterable[Run], config: str, metric: str, baseline: str = "baseline",
                      confidence: float = 0.95) -> tuple[float, float]:
    """Mean over seeds of ``metric(config) − metric(baseline)``, paired by seed, and its
    margin: the half-width of the two-sided ``confidence`` interval of Student's t,
    ``t_((1+confidence)/2, n−1) · sd / √n``.  A difference smaller than its margin is
    within the noise between seeds.

    Example:
        >>> runs = [Run("baseline", s, a, 0, 0, 0, 0, None, None) for s, a in enumerate([.90, .92, .91])]
        >>> runs += [Run("+ L2", s, a, 0, 0, 0, 0, None, None) for s, a in enumerate([.93, .94, .95])]
        >>> d, m = paired_difference(runs, "+ L2", "accuracy")
        >>> round(d, 3), round(m, 3)
        (0.03, 0.025)
    """
    from scipy import stats

    runs = list(runs)
    a, b = per_seed(runs, config, metric), per_seed(runs, baseline, metric)
    seeds_a = sorted(r.seed for r in runs if r.config == config)
    seeds_b = sorted(r.seed for r in runs if r.config == baseline)
    if seeds_a != seeds_b:
        raise ValueError(f"config {config!r} and baseline {baseline!r} must share their seeds, "
                         f"got {seeds_a} and {seeds_b}")
    if len(a) < 2:
        raise ValueError(f"a paired difference needs at least 2 seeds, got {len(a)}")
    d = a - b
    half = float(stats.t.ppf((1 + confidence) / 2, len(d) - 1) * np.std(d, ddof=1) / np.sqrt(len(d)))
    return float(d.mean()), half


def format_table(summary: dict[str, dict[str, tuple[float, float]]]) -> str:
    """The summary as a plain-text table (accuracy in %, ECE, confidence, NLL, seconds)."""
    lines = [f"{'configuration':18} {'test accuracy':>15} {'ECE':>15} {'confidence':>15} "
             f"{'test NLL':>15} {'time (s)':>12}"]
    for config, row in summary.items():
        (acc, acc_sd), (ece, ece_sd), (conf, conf_sd), (nll, nll_sd), (sec, sec_sd) = (
            row[m] for m in METRICS)
        lines.append(f"{config:18} {acc:8.1%} ± {acc_sd:4.1%} {ece:8.3f} ± {ece_sd:.3f} "
                     f"{conf:8.3f} ± {conf_sd:.3f} {nll:8.3f} ± {nll_sd:.3f} {sec:6.1f} ± {sec_sd:3.1f}")
    return "\n".join(lines)


def to_json(runs: Sequence[Run], settings: Settings) -> dict:
    """Everything needed to reproduce and read the experiment, JSON-ready."""
    import tensorflow as tf

    return {
        "experiment": "nnh bag-of-tricks ablation",
        "settings": dataclasses.asdict(settings),
        "configs": {c: list(CONFIGS[c]) for c in dict.fromkeys(r.config for r in runs)},
        "seeds": sorted({r.seed for r in runs}),
        "runs": [r.record() for r in runs],
        "summary": {c: {m: {"mean": v[0], "std": v[1]} for m, v in row.items()}
                    for c, row in summarize(runs).items()},
        "environment": {"python": platform.python_version(), "tensorflow": tf.__version__,
                        "keras": keras.__version__, "numpy": np.__version__,
                        "machine": platform.machine()},
    }


# --------------------------------------------------------------------------- the command


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="nnh ablation")
    parser.description = ("Train the capstone CNN in every configuration of the bag-of-tricks ablation "
                          "(baseline, each trick alone, all together) from several seeds; print mean ± std "
                          "of test accuracy, ECE, confidence, NLL and time, and write every run as JSON.")
    parser.add_argument("--seeds", type=int, default=5, metavar="N",
                        help="train from seeds 0, 1, ..., N-1 (default: 5)")
    parser.add_argument("--out", metavar="PATH", help="write the runs and the summary as JSON to PATH")
    parser.add_argument("--configs", nargs="+", metavar="NAME", choices=list(CONFIGS), default=list(CONFIGS),
                        help="configurations to run (default: all); one of: " + ", ".join(
                            repr(c) for c in CONFIGS))
    parser.add_argument("--epochs", type=int, default=Settings.epochs,
                        help=f"epochs per run (default: {Settings.epochs}, the chapter's)")
    parser.add_argument("--warmup-epochs", type=int, default=None,
                        help=f"warm-up of the schedule, in epochs (default: {Settings.warmup_epochs}, "
                             "or fewer if --epochs leaves no epoch after it)")
    parser.add_argument("--n-train", type=int, default=Settings.n_train,
                        help=f"training examples (default: {Settings.n_train}; 1347 = the whole training split)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    try:
        warmup = (min(Settings.warmup_epochs, max(args.epochs - 1, 0)) if args.warmup_epochs is None
                  else args.warmup_epochs)
        settings = Settings(epochs=args.epochs, n_train=args.n_train, warmup_epochs=warmup)
    except ValueError as error:
        parser.error(f"invalid settings (--epochs, --warmup-epochs, --n-train): {error}")
    start = time.perf_counter()
    runs = run_grid(args.configs, range(args.seeds), settings, progress=not args.no_progress)
    print(format_table(summarize(runs)))
    print(f"{len(runs)} runs in {time.perf_counter() - start:.0f} s")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(to_json(runs, settings), fh, indent=2)
            fh.write("\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
