"""Training helpers: a reproducible ``fit`` and a callback that logs the learning rate."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import keras
import numpy as np

from nnh._tf import set_seed
from nnh.data import Split


class LearningRateLogger(keras.callbacks.Callback):
    """Records the learning rate the optimizer uses for every training batch.

    Keras evaluates a schedule at ``optimizer.iterations`` (the number of
    updates made so far); this callback reads the same value at the start of
    each batch, so ``rates[i]`` is the rate of update ``i``.

    Example:
        >>> logger = LearningRateLogger()
        >>> model.fit(x, y, callbacks=[logger])   # doctest: +SKIP
        >>> logger.rates[:3]                      # doctest: +SKIP
    """

    def __init__(self):
        super().__init__()
        self.rates: list[float] = []

    def on_train_batch_begin(self, batch, logs=None):
        rate = self.model.optimizer.learning_rate
        self.rates.append(float(keras.ops.convert_to_numpy(rate)))


@dataclass
class RunResult:
    """What one training run produced."""

    history: dict[str, list[float]]
    rates: list[float]
    test_accuracy: float
    seconds: float
    model: keras.Model = field(repr=False)


def fit(
    build_model: Callable[[], keras.Model],
    data: Split,
    learning_rate,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    momentum: float = 0.9,
    optimizer: str = "sgd",
    seed: int = 0,
    test_every_epoch: bool = False,
) -> RunResult:
    """Seed everything, train ``build_model()`` with SGD and evaluate it.

    Args:
        build_model: function returning a fresh, uncompiled classifier.
        data: the train/test split.
        learning_rate: a float or a ``keras.optimizers.schedules.LearningRateSchedule``.
        epochs, batch_size: as in ``Model.fit``.
        momentum: SGD momentum (ignored by Adam).
        optimizer: ``"sgd"`` (SGD with ``momentum``) or ``"adam"``.
        seed: seeds weights, shuffling and every random op.
        test_every_epoch: also evaluate on the test set after every epoch
            (``val_*`` keys in the history; costs about a third more time).
            Otherwise the test set is evaluated once, after training.

    Returns:
        :class:`RunResult` with the per-epoch history (training loss and
        accuracy, and test loss and accuracy as ``val_*`` if requested), the
        learning rate of every batch, the final test accuracy and the
        wall-clock time of training plus evaluation.
    """
    if optimizer == "sgd":
        make_optimizer = lambda: keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum)
    elif optimizer == "adam":
        make_optimizer = lambda: keras.optimizers.Adam(learning_rate=learning_rate)
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    set_seed(seed)
    model = build_model()
    model.compile(
        optimizer=make_optimizer(),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    logger = LearningRateLogger()
    start = time.perf_counter()
    history = model.fit(
        data.x_train,
        data.y_train,
        validation_data=(data.x_test, data.y_test) if test_every_epoch else None,
        epochs=epochs,
        batch_size=batch_size,
        callbacks=[logger],
        verbose=0,
    )
    if test_every_epoch:
        test_accuracy = history.history["val_accuracy"][-1]
    else:
        _, test_accuracy = model.evaluate(data.x_test, data.y_test, batch_size=256, verbose=0)
    seconds = time.perf_counter() - start
    return RunResult(
        history={k: [float(v) for v in vs] for k, vs in history.history.items()},
        rates=logger.rates,
        test_accuracy=float(test_accuracy),
        seconds=seconds,
        model=model,
    )


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    """Number of optimizer updates in one epoch (the last batch may be partial)."""
    return int(np.ceil(n_examples / batch_size))
