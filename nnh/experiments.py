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
schedules              warm-up + cosine on an MLP; :func:`fit_with_callbacks`
                       (``LearningRateScheduler``, ``ReduceLROnPlateau``) and
                       :func:`lr_range_test`
weight penalties       :func:`train_penalized` (no penalty, L2, L1, a sweep of λ,
                       early stopping), :func:`penalty_report` and
                       :func:`train_adam` (Adam, Adam + L2, AdamW)
dropout                :func:`compare_dropout`: none, 0.2, 0.5, batch norm (momentum
                       0.99 and 0.9)
augmentation           :func:`compare_shifts` (CNN, random shifts; at two
                       learning rates), :func:`predict_shift_tta` and
                       :func:`compare_calibration` (plain, label smoothing, mixup)
calibration            :func:`temperature_scaling` (plain and label-smoothed MLP,
                       temperature fitted on validation digits) and
                       :func:`calibrated_scores` (the ECE of calibrated predictions)
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


def late_loss_rises(history: dict, start: int = 5) -> np.ndarray:
    """``loss[e] / loss[e - 1]`` of the training loss for the epochs from ``start`` on (0-based;
    5 = the last five of the chapter's ten): values above 1 are epochs where the loss went up."""
    loss = np.asarray(history["loss"], dtype=float)
    return loss[start:] / loss[start - 1:-1]


def fit_with_callbacks(callbacks: list, *, seed: int = 0, setup: Setup = SCHEDULES, epochs: int | None = None,
                       learning_rate: float | None = None, split: data.Split | None = None) -> training.RunResult:
    """The chapter's MLP at a constant starting rate, with Keras callbacks that change it.

    Trains on 80 % of the training digits and reports the loss on the other 20 %
    (``val_loss``, a stratified hold-out with a fixed seed) after every epoch, for
    callbacks such as ``ReduceLROnPlateau`` that watch it; the test set is used once,
    after training.  ``learning_rate`` defaults to ``setup.learning_rate``.
    """
    from sklearn.model_selection import train_test_split

    split = data.digits(n_train=setup.n_train) if split is None else split
    x_fit, x_val, y_fit, y_val = train_test_split(split.x_train, split.y_train, test_size=0.2, random_state=0,
                                                  stratify=split.y_train)
    training.set_seed(seed)
    model = models.mlp(hidden=setup.hidden)
    lr = setup.learning_rate if learning_rate is None else learning_rate
    model.compile(optimizer=training.make_optimizer(setup.optimizer, float(lr), setup.momentum),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    fit_inputs = {"x": training.batches(x_fit, y_fit, setup.batch_size, seed=seed), "shuffle": False,
                  "validation_data": training.batches(x_val, y_val, 512, shuffle=False)}
    return training.train_and_evaluate(model, fit_inputs, (split.x_test, split.y_test),
                                       epochs=setup.epochs if epochs is None else epochs, callbacks=callbacks)


def lr_range_test(seed: int = 0, setup: Setup = SCHEDULES, *, min_lr: float = 1e-3, max_lr: float = 10.0,
                  steps: int = 150, split: data.Split | None = None) -> dict[str, np.ndarray]:
    """Smith's learning-rate range test (WACV 2017): train the chapter's MLP for ``steps`` batches
    while the rate grows exponentially from ``min_lr`` to ``max_lr`` (Keras ``ExponentialDecay``
    with ``decay_rate = max_lr / min_lr > 1``), recording each batch's loss.

    Stops early once the smoothed loss (:func:`smooth`) is not finite or above 4 times its lowest
    value (divergence).  Returns ``{"rate": rate of each batch, "loss": that batch's loss before
    its update, "smoothed": the smoothed loss}``.
    """
    split = data.digits(n_train=setup.n_train) if split is None else split
    schedule = keras.optimizers.schedules.ExponentialDecay(min_lr, decay_steps=steps, decay_rate=max_lr / min_lr)
    training.set_seed(seed)
    model = models.mlp(hidden=setup.hidden)
    model.compile(optimizer=training.make_optimizer(setup.optimizer, schedule, setup.momentum),
                  loss="sparse_categorical_crossentropy")
    epochs = -(-steps // training.steps_per_epoch(len(split.x_train), setup.batch_size))
    ds = training.batches(split.x_train, split.y_train, setup.batch_size, seed=seed).repeat(epochs).take(steps)
    rates, losses = [], []
    for step, (xb, yb) in enumerate(ds):
        rates.append(float(schedule(step)))
        losses.append(float(model.train_on_batch(xb, yb)))
        smoothed = smooth(np.array(losses))
        if not np.isfinite(smoothed[-1]) or smoothed[-1] > 4 * smoothed.min():
            break
    return {"rate": np.array(rates), "loss": np.array(losses), "smoothed": smoothed}


def smooth(values: np.ndarray, beta: float = 0.9) -> np.ndarray:
    """Bias-corrected exponential moving average (as Adam corrects its moments)."""
    out, avg = np.empty(len(values)), 0.0
    for i, v in enumerate(values):
        avg = beta * avg + (1 - beta) * v
        out[i] = avg / (1 - beta ** (i + 1))
    return out


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
                    split: data.Split | None = None, optimizer: keras.optimizers.Optimizer | None = None,
                    callbacks: list | None = None) -> training.RunResult:
    """One run of the chapter's set-up; ``regularizer`` goes on every Dense kernel.
    ``validate``: evaluate the validation digits after every epoch (``val_*``).
    ``optimizer``: instead of the set-up's (SGD with momentum); ``callbacks``: Keras
    callbacks for ``fit`` (e.g. ``EarlyStopping``, which needs ``validate``).
    :func:`nnh.training.fit` with these options."""
    split = data.digits(n_train=setup.n_train) if split is None else split
    build = lambda: models.mlp(hidden=setup.hidden, kernel_regularizer=regularizer)  # noqa: E731
    return training.fit(build, split, setup.learning_rate, epochs=setup.epochs, batch_size=setup.batch_size,
                        momentum=setup.momentum, optimizer=setup.optimizer if optimizer is None else optimizer,
                        seed=seed, test_every_epoch=validate, callbacks=callbacks)


PENALTY_PATIENCE = 5
"""``EarlyStopping(patience=5)`` in the chapter: stop 5 epochs after the lowest validation loss."""

ADAM_LR = 1e-3
"""Learning rate of the chapter's Adam/AdamW comparison (Keras' default)."""

ADAM_VARIANTS = {"Adam": {}, "Adam + L2": {"l2": 1e-3}, "AdamW": {"weight_decay": 1.0}}
"""Adam without a penalty, Adam on a loss with ``L2(1e-3)`` (the chapter's λ), and AdamW with
``weight_decay=1`` (``lr·wd = 1e-3`` per update; biases excluded, as ``kernel_regularizer`` does)."""


def train_adam(variant: str, *, seed: int = 0, validate: bool = False, setup: Setup = PENALTIES,
               split: data.Split | None = None) -> training.RunResult:
    """One run of the chapter's network and data with Adam (``ADAM_LR``) in one of the
    :data:`ADAM_VARIANTS`: an L2 penalty coupled to Adam's normalisation, or AdamW's
    decoupled decay."""
    if variant not in ADAM_VARIANTS:
        raise ValueError(f"variant must be one of {sorted(ADAM_VARIANTS)}, got {variant!r}")
    options = ADAM_VARIANTS[variant]
    regularizer = keras.regularizers.L2(options["l2"]) if "l2" in options else None
    if "weight_decay" in options:
        optimizer = keras.optimizers.AdamW(learning_rate=ADAM_LR, weight_decay=options["weight_decay"])
        optimizer.exclude_from_weight_decay(var_names=["bias"])
    else:
        optimizer = keras.optimizers.Adam(learning_rate=ADAM_LR)
    return train_penalized(regularizer, seed=seed, validate=validate, setup=setup, split=split,
                           optimizer=optimizer)


def cross_entropy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    """Mean cross-entropy of ``model`` on ``(x, y)`` alone, without any penalty."""
    return training.sparse_cross_entropy(training.predict(model, x), y)


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
    "batch norm 0.99": {"batch_norm": True},  # Keras' default momentum
    "batch norm 0.9": {"batch_norm": True, "batch_norm_momentum": 0.9},
}
"""Name → the keyword arguments of :func:`nnh.models.mlp`.  The batch-norm variants differ
only in the momentum of the moving statistics (5 updates per epoch here: with 0.99 they
average over the last ~100 updates, 20 epochs; with 0.9 over ~10, 2 epochs)."""


def compare_dropout(seed: int = 0, setup: Setup = DROPOUT, split: data.Split | None = None,
                    names: Iterable[str] | None = None) -> dict[str, training.RunResult]:
    """Train the variants ``names`` (default: all) of :data:`DROPOUT_VARIANTS` from ``seed``,
    with the validation digits evaluated after every epoch.  Returns ``{variant: RunResult}``."""
    split = data.digits(n_train=setup.n_train) if split is None else split
    names = list(DROPOUT_VARIANTS) if names is None else list(names)
    return {
        name: training.fit(lambda kw=DROPOUT_VARIANTS[name]: models.mlp(hidden=setup.hidden, **kw), split,
                           setup.learning_rate, epochs=setup.epochs, batch_size=setup.batch_size,
                           optimizer=setup.optimizer, seed=seed, test_every_epoch=True)
        for name in names
    }


def dropout_report(run: training.RunResult, split: data.Split) -> dict[str, float]:
    """The chapter's row for one model: logged (dropout on) and inference-mode training
    accuracy and loss, validation accuracy and loss, the inference-mode
    train − validation accuracy gap, and the lowest validation loss and its epoch."""
    h = run.history
    probs = training.predict(run.model, split.x_train)  # dropout off (no penalties in these models)
    train_acc, train_loss = metrics.accuracy(probs, split.y_train), training.sparse_cross_entropy(probs, split.y_train)
    return dict(logged_acc=h["accuracy"][-1], logged_loss=h["loss"][-1], train_acc=float(train_acc),
                train_loss=float(train_loss), val_acc=h["val_accuracy"][-1], val_loss=h["val_loss"][-1],
                gap=float(train_acc) - h["val_accuracy"][-1], best_val_loss=min(h["val_loss"]),
                best_epoch=int(np.argmin(h["val_loss"])) + 1)


# --------------------------------------------------------------------------- augmentation

SHIFTS = Setup(n_train=300, hidden=(), epochs=30, batch_size=64, learning_rate=0.02, optimizer="adam")
"""Chapter "augmentation", first experiment: a CNN (8 and 16 filters, 32 dense units)
on 300 training digits, Adam."""

SHIFTS_SLOW = Setup(n_train=300, hidden=(), epochs=30, batch_size=64, learning_rate=0.003, optimizer="adam")
""":data:`SHIFTS` with the capstone's Adam rate (0.003 instead of 0.02): in 30 epochs the CNN
no longer memorises the 300 digits (the chapter explains why the shifts then do not help)."""

CALIBRATION = Setup(n_train=500, hidden=(64,), epochs=20, batch_size=64, learning_rate=0.01, optimizer="adam")
"""Chapter "augmentation", calibration experiment: a one-hidden-layer MLP on 500 digits."""

CALIBRATION_VARIANTS = {"plain": {}, "label smoothing 0.1": {"label_smoothing": 0.1},
                        "mixup α=0.2": {"mixup_alpha": 0.2}}
"""Name → the keyword arguments of :func:`nnh.augment.fit_augmented`."""


def random_shifts(max_shift: int = 1, p: float = 0.5):
    """The chapter's augmentation: each image of a batch, independently with probability
    ``p`` (:func:`nnh.augment.apply_with_probability`), is shifted by up to ``max_shift``
    pixels (:func:`nnh.augment.random_shift`; the shift ``(0, 0)`` is one of its
    ``(2·max_shift + 1)²`` equally likely shifts)."""
    return augment.apply_with_probability(lambda x, rng: augment.random_shift(x, max_shift, rng), p=p)


def predict_shift_tta(model: keras.Model, x: np.ndarray, max_shift: int = 1) -> np.ndarray:
    """Test-time augmentation: the model's predicted probabilities averaged over the
    ``(2·max_shift + 1)²`` copies of each image translated by ``dy, dx ∈ {−max_shift, …,
    max_shift}`` pixels (zero fill, as in training).  Returns ``(N, K)`` float64."""
    x = np.asarray(x, dtype=np.float32)
    m = int(max_shift)
    height, width = x.shape[1:3]
    padded = np.pad(x, ((0, 0), (m, m), (m, m), (0, 0)))
    probs = [keras.ops.convert_to_numpy(model(padded[:, m + dy:m + dy + height, m + dx:m + dx + width],
                                              training=False))
             for dy in range(-m, m + 1) for dx in range(-m, m + 1)]
    return np.mean(probs, axis=0, dtype=np.float64)


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


# --------------------------------------------------------------------------- calibration chapter

TEMPERATURE = Setup(n_train=200, hidden=(256, 256), epochs=50, batch_size=64, learning_rate=0.01,
                    optimizer="adam")
"""Chapter "calibration": a 256-256 MLP trained for 50 epochs on 200 digits (Adam), long
after it fits them, so that it ends over-confident."""

N_VALIDATION = 300
"""Validation digits for fitting the temperature, held out from the 1,347 training digits."""

TEMPERATURE_VARIANTS = {"plain": {}, "label smoothing 0.1": {"label_smoothing": 0.1}}
"""Name → the keyword arguments of :func:`nnh.augment.fit_augmented`."""

ECE_SAMPLE_SIZES = (100, 450, 2000, 10000)
"""Test-set sizes N of the chapter's simulation of the ECE of calibrated predictions."""


def calibration_splits(n_train: int | None = TEMPERATURE.n_train,
                       n_validation: int = N_VALIDATION) -> tuple[data.Split, np.ndarray, np.ndarray]:
    """Train / validation / test digits (flat): the 450 test digits of :func:`nnh.data.digits`,
    ``n_validation`` digits held out from its 1,347 training digits (stratified, fixed), and
    ``n_train`` of the others for training.  Returns ``(Split(train, test), x_val, y_val)``."""
    from sklearn.model_selection import train_test_split

    full = data.digits(flat=True)
    x_rest, x_val, y_rest, y_val = train_test_split(full.x_train, full.y_train, test_size=n_validation,
                                                    random_state=0, stratify=full.y_train)
    if n_train is not None and n_train < len(x_rest):
        x_rest, _, y_rest, _ = train_test_split(x_rest, y_rest, train_size=n_train, random_state=0,
                                                stratify=y_rest)
    return data.Split(x_rest, y_rest, full.x_test, full.y_test), x_val, y_val


def logits(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The pre-softmax outputs ``z`` of a Sequential classifier of :mod:`nnh.models` (inference
    mode): its layers up to the last, then the last ``Dense`` layer's ``h @ W + b`` without the
    softmax, in float64.  ``softmax(z)`` is what ``model(x)`` returns."""
    h = x
    for layer in model.layers[:-1]:
        h = layer(h, training=False)
    kernel, bias = model.layers[-1].get_weights()
    return keras.ops.convert_to_numpy(h).astype(np.float64) @ kernel + bias


def temperature_scaling(seed: int = 0, setup: Setup = TEMPERATURE,
                        splits: tuple | None = None) -> dict[str, dict[str, object]]:
    """Train every variant of :data:`TEMPERATURE_VARIANTS` from ``seed``, fit its temperature on
    the validation digits (:func:`nnh.metrics.fit_temperature`) and keep the test logits.

    Returns ``{variant: {"T": fitted temperature, "val_logits": ..., "test_logits": ...,
    "train_accuracy": last epoch's, "model": the trained model}}``; ``splits`` is
    :func:`calibration_splits`' result."""
    split, x_val, y_val = calibration_splits(setup.n_train) if splits is None else splits
    build = lambda: models.mlp(hidden=setup.hidden)  # noqa: E731
    out = {}
    for name, options in TEMPERATURE_VARIANTS.items():
        run = augment.fit_augmented(build, split, setup.learning_rate, epochs=setup.epochs,
                                    batch_size=setup.batch_size, optimizer=setup.optimizer, seed=seed, **options)
        z_val = logits(run.model, x_val)
        out[name] = {"T": metrics.fit_temperature(z_val, y_val), "val_logits": z_val,
                     "test_logits": logits(run.model, split.x_test), "train_accuracy": run.history["accuracy"][-1],
                     "model": run.model}
    return out


def probability_scores(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> dict[str, float]:
    """Accuracy, mean confidence, ECE (``n_bins`` bins), NLL and Brier score of ``probs``."""
    return {"accuracy": metrics.accuracy(probs, labels), "confidence": metrics.mean_confidence(probs),
            "ECE": metrics.expected_calibration_error(probs, labels, n_bins),
            "NLL": metrics.negative_log_likelihood(probs, labels), "Brier": metrics.brier_score(probs, labels)}


def temperature_report(run: dict, labels: np.ndarray, n_bins: int = 10) -> dict[str, float]:
    """:func:`probability_scores` on the test digits before (``T = 1``) and after temperature
    scaling, keys ``"<score> before"`` and ``"<score> after"``, plus the fitted ``"T"``."""
    before = probability_scores(metrics.softmax(run["test_logits"]), labels, n_bins)
    after = probability_scores(metrics.softmax(run["test_logits"], run["T"]), labels, n_bins)
    return {"T": run["T"], **{f"{k} before": v for k, v in before.items()},
            **{f"{k} after": v for k, v in after.items()}}


def error_share(probs: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of the Brier score (summed over examples) that comes from the
    misclassified examples."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    wrong = probs.argmax(axis=1) != labels
    if not wrong.any():
        return 0.0
    return float(metrics.brier_score(probs[wrong], labels[wrong]) * wrong.sum()
                 / (metrics.brier_score(probs, labels) * len(labels)))


def calibrated_scores(pool: np.ndarray, sizes: Iterable[int] = ECE_SAMPLE_SIZES, repeats: int = 50,
                      seed: int = 0, n_bins: int = 10) -> dict[int, dict[str, np.ndarray]]:
    """ECE, NLL and Brier score of predictions that are perfectly calibrated by construction.

    For each ``N`` in ``sizes``, ``repeats`` times: draw ``N`` rows of ``pool`` (predicted
    probabilities ``(M, K)``) with replacement, and draw each example's label from its own
    row (class ``k`` with probability ``p_k``), so that the predictions are calibrated.
    Returns ``{N: {"ECE" | "NLL" | "Brier": array of the repeats}}``."""
    pool = np.asarray(pool, dtype=np.float64)
    rng = np.random.default_rng(seed)
    out = {}
    for n in sizes:
        rows = {"ECE": [], "NLL": [], "Brier": []}
        for _ in range(repeats):
            p = pool[rng.integers(0, len(pool), size=n)]
            y = np.minimum((p.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1), p.shape[1] - 1)
            rows["ECE"].append(metrics.expected_calibration_error(p, y, n_bins))
            rows["NLL"].append(metrics.negative_log_likelihood(p, y))
            rows["Brier"].append(metrics.brier_score(p, y))
        out[n] = {k: np.array(v) for k, v in rows.items()}
    return out
