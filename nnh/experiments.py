"""The chapters' training experiments, in one place.

Each chapter runs its experiment through a function of this module, and
``tests/claims/`` re-runs the same function from more seeds to check, with a
margin derived from the spread between seeds, every claim the chapter's text
makes about an effect.  The set-ups (data, network, optimizer, epochs) are
constants here, so the chapter, its prose and its claim tests cannot drift
apart.

=====================  =========================================================
chapter                experiment
=====================  =========================================================
learning-rate          :func:`compare_schedules`: constant, step, cosine and
schedules              warm-up + cosine on an MLP
weight penalties       :func:`train_penalized` (no penalty, L2, L1, a sweep of λ)
                       and :func:`penalty_report`
dropout                :func:`compare_dropout`: none, 0.2, 0.5, batch norm
augmentation           :func:`compare_shifts` (CNN, random shifts) and
                       :func:`compare_calibration` (plain, label smoothing, mixup)
bag of tricks          :mod:`nnh.ablation`
=====================  =========================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import keras
import numpy as np

from nnh import augment, data, metrics, models, regularization, schedules, training


@dataclass(frozen=True)
class Setup:
    """Data, network and optimizer of one chapter's experiment."""

    n_train: int | None
    hidden: tuple[int, ...]
    epochs: int
    batch_size: int
    learning_rate: float
    optimizer: str = "sgd"
    momentum: float = 0.9


# --------------------------------------------------------------------------- schedules

SCHEDULES = Setup(n_train=None, hidden=(128, 128), epochs=10, batch_size=32, learning_rate=0.2)
"""Chapter "learning-rate schedules": all 1,347 training digits, SGD with momentum,
peak rate 0.2."""


def schedule_candidates(setup: Setup = SCHEDULES, n_examples: int = 1347) -> dict[str, Callable]:
    """Name → function returning a fresh learning rate (a float or a schedule) for
    ``n_examples`` training examples: constant, step (×0.3 every 4 epochs), cosine,
    and 2 epochs of warm-up + cosine."""
    per_epoch = training.steps_per_epoch(n_examples, setup.batch_size)
    total, peak = setup.epochs * per_epoch, setup.learning_rate
    return {
        "constant": lambda: peak,
        "step": lambda: schedules.StepDecay(peak, drop=0.3, every=4 * per_epoch),
        "cosine": lambda: schedules.WarmupCosine(0, total, peak),
        "warm-up + cosine": lambda: schedules.WarmupCosine(2 * per_epoch, total, peak),
    }


def compare_schedules(seeds: Iterable[int] = (0, 1), setup: Setup = SCHEDULES,
                      split: data.Split | None = None) -> dict[tuple[str, int], training.RunResult]:
    """Train the MLP with every schedule of :func:`schedule_candidates` from each seed.

    Returns ``{(schedule name, seed): RunResult}``.
    """
    split = data.digits(n_train=setup.n_train) if split is None else split
    build = lambda: models.mlp(hidden=setup.hidden)  # noqa: E731
    return {
        (name, seed): training.fit(build, split, make(), epochs=setup.epochs, batch_size=setup.batch_size,
                                   momentum=setup.momentum, seed=seed)
        for name, make in schedule_candidates(setup, len(split.x_train)).items() for seed in seeds
    }


# --------------------------------------------------------------------------- weight penalties

PENALTIES = Setup(n_train=300, hidden=(256, 256), epochs=40, batch_size=30, learning_rate=0.05)
"""Chapter "weight penalties": 300 training digits, a 256-256 MLP, SGD with momentum."""

PENALTY_LAMBDAS = {"L2": 1e-3, "L1": 3e-4}
"""The chapter's coefficients: ``keras.regularizers.L2(1e-3)`` and ``L1(3e-4)``."""


def make_regularizer(kind: str | None, lam: float | None = None):
    """``None`` (no penalty), or ``keras.regularizers.L2``/``L1`` with ``lam``
    (default: :data:`PENALTY_LAMBDAS`)."""
    if kind is None:
        return None
    if kind not in PENALTY_LAMBDAS:
        raise ValueError(f"kind must be None, 'L2' or 'L1', got {kind!r}")
    lam = PENALTY_LAMBDAS[kind] if lam is None else lam
    return keras.regularizers.L2(lam) if kind == "L2" else keras.regularizers.L1(lam)


def train_penalized(regularizer=None, *, seed: int = 0, validate: bool = True, setup: Setup = PENALTIES,
                    split: data.Split | None = None) -> training.RunResult:
    """One run of the chapter's set-up; ``regularizer`` goes on every Dense kernel.
    ``validate``: evaluate the validation digits after every epoch."""
    split = data.digits(n_train=setup.n_train) if split is None else split
    build = lambda: models.mlp(hidden=setup.hidden, kernel_regularizer=regularizer)  # noqa: E731
    return training.fit(build, split, setup.learning_rate, epochs=setup.epochs, batch_size=setup.batch_size,
                        momentum=setup.momentum, seed=seed, test_every_epoch=validate)


def cross_entropy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    """Mean cross-entropy of ``model`` on ``(x, y)`` alone, without any penalty."""
    p = model.predict(x, batch_size=512, verbose=0)
    return float(keras.losses.SparseCategoricalCrossentropy()(y, p))


def penalty_report(run: training.RunResult, split: data.Split) -> dict[str, float]:
    """What the chapter tabulates for one trained model: accuracies, cross-entropies
    (without the penalty) and their gap, the penalty, and the weights' sparsity
    (``|w| ≤ 1e-3``, ``≤ 1e-4``, ``== 0``) and root mean square."""
    model = run.model
    train_ce, val_ce = cross_entropy(model, split.x_train, split.y_train), cross_entropy(model, split.x_test,
                                                                                          split.y_test)
    kernels = regularization.kernels(model)
    pooled = np.concatenate([k.ravel() for k in kernels])
    return dict(train_acc=run.history["accuracy"][-1], val_acc=run.test_accuracy, train_ce=train_ce,
                val_ce=val_ce, gap=val_ce - train_ce,
                penalty=float(sum(keras.ops.convert_to_numpy(t) for t in model.losses)),
                near_zero=regularization.sparsity(kernels, tol=1e-3),
                very_near_zero=regularization.sparsity(kernels, tol=1e-4),
                exact_zero=regularization.sparsity(kernels), rms=float(np.sqrt(np.mean(pooled ** 2))))


# --------------------------------------------------------------------------- dropout

DROPOUT = Setup(n_train=300, hidden=(256, 256), epochs=60, batch_size=64, learning_rate=0.002,
                optimizer="adam")
"""Chapter "dropout": 300 training digits, a 256-256 MLP, Adam."""

DROPOUT_VARIANTS = {
    "none": {},
    "dropout 0.2": {"dropout": 0.2},
    "dropout 0.5": {"dropout": 0.5},
    "batch norm": {"batch_norm": True},
}
"""Name → the keyword arguments of :func:`nnh.models.mlp`."""


def compare_dropout(seed: int = 0, setup: Setup = DROPOUT,
                    split: data.Split | None = None) -> dict[str, training.RunResult]:
    """Train every variant of :data:`DROPOUT_VARIANTS` from ``seed``, with the validation
    digits evaluated after every epoch.  Returns ``{variant: RunResult}``."""
    split = data.digits(n_train=setup.n_train) if split is None else split
    return {
        name: training.fit(lambda kw=kwargs: models.mlp(hidden=setup.hidden, **kw), split, setup.learning_rate,
                           epochs=setup.epochs, batch_size=setup.batch_size, optimizer=setup.optimizer,
                           seed=seed, test_every_epoch=True)
        for name, kwargs in DROPOUT_VARIANTS.items()
    }


def dropout_report(run: training.RunResult, split: data.Split) -> dict[str, float]:
    """The chapter's row for one model: logged (dropout on) and inference-mode training
    accuracy and loss, validation accuracy and loss, the inference-mode
    train − validation accuracy gap, and the lowest validation loss and its epoch."""
    h = run.history
    train_loss, train_acc = run.model.evaluate(split.x_train, split.y_train, verbose=0)  # dropout off
    return dict(logged_acc=h["accuracy"][-1], logged_loss=h["loss"][-1], train_acc=float(train_acc),
                train_loss=float(train_loss), val_acc=h["val_accuracy"][-1], val_loss=h["val_loss"][-1],
                gap=float(train_acc) - h["val_accuracy"][-1], best_val_loss=min(h["val_loss"]),
                best_epoch=int(np.argmin(h["val_loss"])) + 1)


# --------------------------------------------------------------------------- augmentation

SHIFTS = Setup(n_train=300, hidden=(), epochs=30, batch_size=64, learning_rate=0.02, optimizer="adam")
"""Chapter "augmentation", first experiment: a CNN (8 and 16 filters, 32 dense units)
on 300 training digits, Adam."""

CALIBRATION = Setup(n_train=500, hidden=(64,), epochs=20, batch_size=64, learning_rate=0.01, optimizer="adam")
"""Chapter "augmentation", calibration experiment: a one-hidden-layer MLP on 500 digits."""

CALIBRATION_VARIANTS = {"plain": {}, "label smoothing 0.1": {"label_smoothing": 0.1},
                        "mixup α=0.2": {"mixup_alpha": 0.2}}
"""Name → the keyword arguments of :func:`nnh.augment.fit_augmented`."""


def random_shifts(max_shift: int = 1, p: float = 0.5):
    """The chapter's augmentation: shift a batch by up to ``max_shift`` pixels
    (:func:`nnh.augment.random_shift`) with probability ``p``."""
    return augment.apply_with_probability(lambda x, rng: augment.random_shift(x, max_shift, rng), p=p)


def compare_shifts(seeds: Iterable[int] = (0, 1, 2), setup: Setup = SHIFTS,
                   split: data.Split | None = None) -> dict[tuple[str, int], training.RunResult]:
    """The CNN without and with random shifts, from each seed, with the test digits
    evaluated after every epoch.  Returns ``{("no augmentation" | "random shifts", seed): RunResult}``."""
    split = data.digits(flat=False, n_train=setup.n_train) if split is None else split
    build = lambda: models.cnn(filters=(8, 16), dense=32)  # noqa: E731
    return {
        (name, seed): augment.fit_augmented(build, split, setup.learning_rate, epochs=setup.epochs,
                                            batch_size=setup.batch_size, optimizer=setup.optimizer, seed=seed,
                                            transform=transform, test_every_epoch=True)
        for name, transform in [("no augmentation", None), ("random shifts", random_shifts())]
        for seed in seeds
    }


def compare_calibration(seeds: Iterable[int] = (0, 1, 2), setup: Setup = CALIBRATION,
                        split: data.Split | None = None) -> dict[tuple[str, int], np.ndarray]:
    """The MLP trained plain, with label smoothing and with mixup, from each seed.
    Returns ``{(variant, seed): predicted test probabilities (N, 10)}``."""
    split = data.digits(flat=True, n_train=setup.n_train) if split is None else split
    build = lambda: models.mlp(hidden=setup.hidden)  # noqa: E731
    probs = {}
    for name, options in CALIBRATION_VARIANTS.items():
        for seed in seeds:
            run = augment.fit_augmented(build, split, setup.learning_rate, epochs=setup.epochs,
                                        batch_size=setup.batch_size, optimizer=setup.optimizer, seed=seed,
                                        **options)
            probs[name, seed] = keras.ops.convert_to_numpy(run.model(split.x_test, training=False))
    return probs


def calibration_report(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> dict[str, float]:
    """Accuracy, ECE (``n_bins`` bins), mean confidence and confidence − accuracy."""
    acc, conf = metrics.accuracy(probs, labels), metrics.mean_confidence(probs)
    return {"accuracy": acc, "ECE": metrics.expected_calibration_error(probs, labels, n_bins),
            "confidence": conf, "conf − acc": conf - acc}
