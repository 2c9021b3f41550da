"""Training helpers: a reproducible ``fit`` and a callback that logs the learning rate."""

from __future__ import annotations

import collections
import contextlib
import json
import random
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from nnh._tf import set_seed
from nnh.data import Split


class LearningRateLogger(keras.callbacks.Callback):
    """Records the learning rate the optimizer uses for every training update.

    Keras evaluates a schedule at ``optimizer.iterations`` (the number of
    updates made so far), so ``rates[i]`` is the schedule at step ``i`` of this
    ``fit``, or the value of a constant rate (which callbacks such as
    ``ReduceLROnPlateau`` change only between epochs).  The rates are filled in
    at the end of each batch call, so the callback also works when the model is
    compiled with ``steps_per_execution > 1`` (several updates per call).

    Example:
        >>> logger = LearningRateLogger()
        >>> model.fit(x, y, callbacks=[logger])   # doctest: +SKIP
        >>> logger.rates[:3]                      # doctest: +SKIP
    """

    def __init__(self):
        super().__init__()
        self.rates: list[float] = []
        self._logged = 0  # optimizer.iterations up to which rates are recorded

    def on_train_begin(self, logs=None):
        self._logged = int(self.model.optimizer.iterations.numpy())

    def on_train_batch_end(self, batch, logs=None):
        optimizer = self.model.optimizer
        done = int(optimizer.iterations.numpy())
        schedule = getattr(optimizer, "_learning_rate", None)  # Keras 3 keeps the schedule here
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            self.rates += _schedule_rates(schedule, self._logged, done)
        else:
            rate = float(optimizer.learning_rate.numpy())
            self.rates += [rate] * (done - self._logged)
        self._logged = done


_RATES: dict[str, dict[int, float]] = {}
"""Rates of the schedules :func:`_schedule_rates` has evaluated: configuration → step → rate."""


def _schedule_rates(schedule, start: int, stop: int) -> list[float]:
    """``[float(schedule(step)) for step in range(start, stop)]``, each step evaluated once per
    configuration of Keras' and nnh's schedules (pure functions of the step and their
    configuration): the eager evaluation costs a few milliseconds a step, more than the
    training step of a small network."""
    cls = type(schedule)
    pure = cls.__module__.startswith(("keras.", "nnh."))
    try:
        key = f"{cls.__module__}.{cls.__qualname__}{json.dumps(schedule.get_config(), sort_keys=True)}" if pure else None
    except (TypeError, ValueError, NotImplementedError):
        key = None
    if key is None:
        return [float(schedule(step)) for step in range(start, stop)]
    if key not in _RATES and len(_RATES) >= 64:
        _RATES.clear()
    known = _RATES.setdefault(key, {})
    for step in range(start, stop):
        if step not in known:
            known[step] = float(schedule(step))
    return [known[step] for step in range(start, stop)]


@dataclass
class RunResult:
    """What one training run produced."""

    history: dict[str, list[float]]
    rates: list[float]
    test_accuracy: float
    seconds: float
    model: keras.Model = field(repr=False)


STEPS_PER_EXECUTION = 32
"""Updates per compiled call of ``Model.fit`` (``compile(steps_per_execution=...)``).

Training the book's small models is dominated by Python overhead per batch; running
32 updates per call makes a run about a third faster and changes no number: the
same updates run in the same order (checked in ``tests/test_experiments.py``)."""


def fit(
    build_model: Callable[[], keras.Model],
    data: Split,
    learning_rate,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    momentum: float = 0.9,
    optimizer: str | keras.optimizers.Optimizer = "sgd",
    seed: int = 0,
    test_every_epoch: bool = False,
    callbacks: list | None = None,
) -> RunResult:
    """Seed everything, train ``build_model()`` with SGD and evaluate it.

    Args:
        build_model: function returning a fresh, uncompiled classifier.
        data: the train/test split.
        learning_rate: a float or a ``keras.optimizers.schedules.LearningRateSchedule``.
        epochs, batch_size: as in ``Model.fit``.
        momentum: SGD momentum (ignored by Adam).
        optimizer: ``"sgd"`` (SGD with ``momentum``), ``"adam"``, or a fresh
            ``keras.optimizers.Optimizer`` to use as it is (``learning_rate`` and
            ``momentum`` are then ignored).
        seed: seeds weights, shuffling and every random op.
        test_every_epoch: also evaluate on the test set after every epoch
            (``val_*`` keys in the history, by :class:`EagerValidation`).
            Otherwise the test set is evaluated once, after training.
        callbacks: more Keras callbacks for ``Model.fit`` (e.g. ``EarlyStopping``
            on ``val_loss``, which needs ``test_every_epoch``).

    Returns:
        :class:`RunResult` with the per-epoch history (training loss and
        accuracy, and test loss and accuracy as ``val_*`` if requested), the
        learning rate of every batch, the final test accuracy and the
        wall-clock time of training plus evaluation.
    """
    set_seed(seed)
    model = build_model()
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        optimizer = make_optimizer(optimizer, learning_rate, momentum)
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    validation = [EagerValidation(data.x_test, data.y_test)] if test_every_epoch else []
    return train_and_evaluate(
        model,
        {"x": batches(data.x_train, data.y_train, batch_size, seed=seed), "shuffle": False},
        (data.x_test, data.y_test),
        epochs=epochs,
        callbacks=validation + list(callbacks or []),
        test_every_epoch=test_every_epoch,
    )


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, *, seed: int | None = None,
            shuffle: bool = True) -> tf.data.Dataset:
    """Mini-batches of ``(x, y)`` as a ``tf.data.Dataset``, reshuffled at every epoch.

    What ``Model.fit(x, y, batch_size=..., shuffle=True)`` feeds (every example once per
    epoch, in a new random order, the last batch possibly smaller), but cheaper: from NumPy
    arrays, Keras 3 builds a new input pipeline at the start of every epoch (about 9 ms
    on a laptop CPU, longer than the training of the chapters' 5-batch epochs), while a
    ``Dataset``'s iterator is cheap to restart.  ``seed`` fixes the order of every epoch.

    Example:
        >>> ds = batches(np.arange(10.0)[:, None], np.arange(10), 4, seed=0)
        >>> [len(yb) for _, yb in ds]
        [4, 4, 2]
        >>> sorted(int(v) for _, yb in ds for v in yb)
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    """
    ds = tf.data.Dataset.from_tensor_slices((np.asarray(x), np.asarray(y)))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size)


def make_optimizer(name: str, learning_rate, momentum: float = 0.9) -> keras.optimizers.Optimizer:
    """``"sgd"`` (SGD with ``momentum``) or ``"adam"``, with ``learning_rate`` (a float or a schedule)."""
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {name!r}")


def predict(model: keras.Model, x, batch_size: int = 4096) -> np.ndarray:
    """``model(x, training=False)`` as a float64 NumPy array: what ``model.predict`` returns.

    The forward pass runs eagerly, batch by batch.  ``model.predict`` and
    ``model.evaluate`` first trace a ``tf.function`` for each new model, which on
    2 CPU cores takes longer (about a second) than the pass itself on the few
    hundred digits of this course.  Dropout and batch normalization run in
    inference mode, as in ``predict``.
    """
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size}")
    x = np.asarray(x, dtype=np.float32)
    parts = [keras.ops.convert_to_numpy(model(x[i:i + batch_size], training=False))
             for i in range(0, len(x), batch_size)]
    return np.concatenate(parts).astype(np.float64)


class EagerValidation(keras.callbacks.Callback):
    """``validation_data`` for a softmax classifier without Keras' evaluation loop: after
    every epoch, ``val_loss`` and ``val_accuracy`` of :func:`predict` on ``(x, labels)``.

    ``val_loss`` is what Keras' own validation reports for a model compiled with
    ``"sparse_categorical_crossentropy"``: that loss (Keras' function, float32) plus the
    model's penalties (``model.losses``, e.g. ``kernel_regularizer``).  The numbers
    agree with ``validation_data`` to float32 rounding (a test checks it); the epoch
    costs one forward pass instead of a data pipeline, and no test function is traced.
    Put it before callbacks that read ``val_*`` (``EarlyStopping``).
    """

    def __init__(self, x, labels):
        super().__init__()
        self.x = np.asarray(x, dtype=np.float32)
        self.labels = np.asarray(labels)

    def on_epoch_end(self, epoch, logs=None):
        probs = predict(self.model, self.x)
        penalties = [keras.ops.convert_to_numpy(p) for p in self.model.losses]
        if logs is not None:
            logs["val_loss"] = float(np.float32(sparse_cross_entropy(probs, self.labels)) + np.float32(sum(penalties)))
            logs["val_accuracy"] = _accuracy(probs, self.labels)


def sparse_cross_entropy(probs: np.ndarray, labels) -> float:
    """Keras' ``SparseCategoricalCrossentropy`` of softmax outputs, in float32 as in training
    (Keras' clipping to ``[1e-7, 1 − 1e-7]``; :func:`nnh.metrics.negative_log_likelihood` is
    the float64 one clipped at 1e-12)."""
    return float(keras.losses.SparseCategoricalCrossentropy()(labels, np.asarray(probs, dtype=np.float32)))


def _accuracy(probs: np.ndarray, y) -> float:
    """Keras' ``"accuracy"`` for a classifier's outputs: the share of argmax predictions equal
    to the labels (integers, or one-hot rows).  Unlike :func:`nnh.metrics.accuracy` it takes
    any outputs (float32 softmax rows may exceed 1 by rounding), as ``model.evaluate`` did."""
    y = np.asarray(y)
    labels = y.argmax(axis=-1) if y.ndim == probs.ndim else y.reshape(-1)
    return float(np.mean(probs.argmax(axis=-1) == labels))


def train_and_evaluate(model: keras.Model, fit_inputs: dict, test: tuple, *, epochs: int,
                       callbacks: list | None = None, test_every_epoch: bool = False) -> RunResult:
    """``model.fit(**fit_inputs)`` for ``epochs`` with a :class:`LearningRateLogger`, then the
    test accuracy: the last ``val_accuracy`` if ``test_every_epoch``, else the accuracy of
    :func:`predict` on ``test = (x, y)`` (``model.evaluate``'s, without tracing it)."""
    logger = LearningRateLogger()
    start = time.perf_counter()
    with trained_in_place_of(model) as trainer:
        history = trainer.fit(**fit_inputs, epochs=epochs, callbacks=[logger, *(callbacks or [])], verbose=0)
    if test_every_epoch:
        test_accuracy = history.history["val_accuracy"][-1]
    else:
        test_accuracy = _accuracy(predict(model, test[0]), test[1])
    seconds = time.perf_counter() - start
    return RunResult(
        history={k: [float(v) for v in vs] for k, vs in history.history.items()},
        rates=logger.rates,
        test_accuracy=float(test_accuracy),
        seconds=seconds,
        model=model,
    )


TRAINERS = 8
"""How many compiled stand-ins :func:`trained_in_place_of` keeps, the least recently used
dropped first (0: every model is trained itself)."""

_trainers: collections.OrderedDict[str, tuple[keras.Model, list[np.ndarray]] | None] = collections.OrderedDict()


def _anonymous(value, names: dict[str, str]):
    """``value`` (a JSON-like config) with every string that names a layer replaced by the
    layer's index: two models built alike differ only in their layers' automatic names."""
    if isinstance(value, dict):
        return {k: _anonymous(v, names) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_anonymous(v, names) for v in value]
    return names.get(value, value) if isinstance(value, str) else value


def _signature(model: keras.Model) -> str | None:
    """What a traced training step of ``model`` depends on, without the layers' names; ``None``
    if ``model`` cannot use a stand-in (already trained, or one Keras cannot serialize)."""
    if not model.compiled or model.train_function is not None or model.optimizer.built or not model.built:
        return None
    try:
        with warnings.catch_warnings():  # Keras warns when it serializes a lambda
            warnings.simplefilter("ignore")
            compile_config = model.get_compile_config()
        compile_config["optimizer"]["config"].pop("name")  # a unique name per optimizer object
        names = {layer.name: f"layer {i}" for i, layer in enumerate(model._flatten_layers(include_self=True))}
        architecture = json.loads(model.to_json())
        architecture.pop("compile_config", None)  # as compile_config, with the optimizer's name
        compiled = {"model": architecture, "compile": compile_config,
                    "variables": [(v.shape, v.dtype, v.trainable) for v in model.variables]}
        return json.dumps(_anonymous(compiled, names), sort_keys=True, default=str)
    except Exception:  # noqa: BLE001 - an unusual model is simply trained itself
        return None


@contextlib.contextmanager
def _random_state_kept():
    """Restore Python's, NumPy's and Keras' global random states after the block."""
    from keras.src.backend.common import global_state
    from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR

    python_state, numpy_state = random.getstate(), np.random.get_state()
    generator = global_state.get_global_attribute(GLOBAL_SEED_GENERATOR)  # None until first used
    keras_state = None if generator is None else generator.state.numpy()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        global_state.set_global_attribute(GLOBAL_SEED_GENERATOR, generator)
        if generator is not None:
            generator.state.assign(keras_state)


def _copy_variables(source: list, target: list) -> None:
    for s, t in zip(source, target, strict=True):
        t.assign(s)


def _new_trainer(model: keras.Model) -> tuple[keras.Model, list[np.ndarray]] | None:
    """A compiled copy of ``model`` and its optimizer's initial state, or ``None`` if Keras
    cannot rebuild the model or its compile arguments from their configs."""
    try:
        with _random_state_kept():  # cloning draws initial weights and seeds
            trainer = keras.models.clone_model(model)
            trainer.compile_from_config(model.get_compile_config())  # also builds the optimizer
    except Exception:  # noqa: BLE001 - such a model is simply trained itself
        return None
    if [(v.shape, v.dtype) for v in trainer.variables] != [(v.shape, v.dtype) for v in model.variables]:
        return None
    return trainer, [v.numpy() for v in trainer.optimizer.variables]


@contextlib.contextmanager
def trained_in_place_of(model: keras.Model):
    """Yield a compiled model to train in place of ``model``, then give ``model`` its state.

    Keras traces a new training function for every new model: about 2 s on 2 CPU cores,
    about as long as the 60 epochs of the capstone's baseline network take.  A model
    compiled like an earlier one (the same layers, optimizer, loss and metrics; only the
    names and the values of the variables may differ) is trained by that earlier model's
    stand-in instead: the stand-in takes ``model``'s variables (weights and random-seed
    states) and a fresh optimizer state, trains with its traced function, and ``model``
    then takes the trained variables and the optimizer's state.  The updates are the same operations
    on the same values, so every number is what training ``model`` itself gives (a
    test checks it).  Any other model (already trained, or one Keras cannot rebuild from
    its config) is yielded itself.  :data:`TRAINERS` stand-ins are kept.
    """
    key = _signature(model) if TRAINERS > 0 else None
    if key is not None and key not in _trainers:
        _trainers[key] = _new_trainer(model)
        while len(_trainers) > TRAINERS:
            _trainers.popitem(last=False)
    if key is None or _trainers[key] is None:
        yield model
        return
    _trainers.move_to_end(key)
    trainer, initial = _trainers[key]
    _copy_variables(model.variables, trainer.variables)
    _copy_variables(initial, trainer.optimizer.variables)
    try:
        yield trainer
    finally:
        _copy_variables(trainer.variables, model.variables)
        model.optimizer.build(model.trainable_variables)
        _copy_variables(trainer.optimizer.variables, model.optimizer.variables)


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    """Number of optimizer updates in one epoch (the last batch may be partial)."""
    return int(np.ceil(n_examples / batch_size))
