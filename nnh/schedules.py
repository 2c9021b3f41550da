"""Learning-rate schedules: pure functions of the training step, and Keras adapters.

Design (after ``optax.schedules``): every schedule is a plain function of the
step that returns a number, so it can be plotted, tested and composed without a
model.  Each formula is written once, against a NumPy-like namespace ``xp``; the
public functions evaluate it with :mod:`numpy` (float64), the Keras
:class:`~keras.optimizers.schedules.LearningRateSchedule` adapters evaluate the
*same* formula with :mod:`keras.ops` inside the optimizer's compiled step.

``step`` is the number of optimizer updates already made (Keras'
``optimizer.iterations``): a Python/NumPy number or an integer array.  A scalar
step gives a Python ``float``; an array gives a float64 array of the same shape.

``plateau_schedule`` is different: a function of the validation losses, the
reference of Keras' ``ReduceLROnPlateau`` callback.

References:
    Goyal et al., *Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour*,
    2017 (linear warm-up).  Loshchilov & Hutter, *SGDR*, ICLR 2017 (cosine
    decay).  He et al., *Bag of Tricks for Image Classification with
    Convolutional Neural Networks*, CVPR 2019 (warm-up + cosine).
"""

from __future__ import annotations

import math

import keras
import numpy as np

from nnh import _validate

__all__ = [
    "step_decay",
    "cosine_decay",
    "linear_warmup",
    "warmup_cosine",
    "plateau_schedule",
    "StepDecay",
    "WarmupCosine",
]


# --- formulas, written once for numpy and keras.ops --------------------------


def _step_decay(xp, step, initial_lr, drop, every):
    return initial_lr * xp.power(drop, xp.floor(step / every))


def _cosine_decay(xp, step, total_steps, initial_lr, final_lr):
    progress = xp.minimum(step, total_steps) / total_steps
    return final_lr + (initial_lr - final_lr) * 0.5 * (1.0 + xp.cos(math.pi * progress))


def _linear_warmup(xp, step, warmup_steps, peak_lr, initial_lr):
    if warmup_steps == 0:
        return peak_lr + 0.0 * step
    return initial_lr + (peak_lr - initial_lr) * xp.minimum(step, warmup_steps) / warmup_steps


def _warmup_cosine(xp, step, warmup_steps, total_steps, peak_lr, final_lr, initial_lr):
    warm = _linear_warmup(xp, step, warmup_steps, peak_lr, initial_lr)
    decay_steps = total_steps - warmup_steps
    if decay_steps == 0:  # no room left to decay: final_lr from the end of warm-up on
        decayed = final_lr + 0.0 * step
    else:
        after = xp.maximum(step - warmup_steps, 0.0)
        decayed = _cosine_decay(xp, after, decay_steps, peak_lr, final_lr)
    return xp.where(step < warmup_steps, warm, decayed)


def _evaluate(formula, step, *params):
    steps = _validate.steps(step)
    value = formula(np, steps, *params)
    if np.ndim(step) == 0:
        return float(value)
    return np.asarray(value, dtype=np.float64)


# --- validation, shared by the functions and the Keras classes ---------------


def _check_step_decay(initial_lr, drop, every):
    return (
        _validate.positive("initial_lr", initial_lr),
        _validate.in_half_open_unit("drop", drop, low_open=True),
        _check_every(every),
    )


def _check_every(every):
    value = _validate.finite("every", every)
    if value < 1:
        raise ValueError(f"every must be >= 1, got {every!r}")
    return value


def _check_cosine(total_steps, initial_lr, final_lr):
    return (
        _validate.integer_at_least("total_steps", total_steps, 1),
        _validate.finite("initial_lr", initial_lr),
        _validate.finite("final_lr", final_lr),
    )


def _check_warmup(warmup_steps, peak_lr, initial_lr):
    return (
        _validate.integer_at_least("warmup_steps", warmup_steps, 0),
        _validate.finite("peak_lr", peak_lr),
        _validate.finite("initial_lr", initial_lr),
    )


def _check_warmup_cosine(warmup_steps, total_steps, peak_lr, final_lr, initial_lr):
    warmup_steps, peak_lr, initial_lr = _check_warmup(warmup_steps, peak_lr, initial_lr)
    total_steps = _validate.integer_at_least("total_steps", total_steps, 1)
    if warmup_steps > total_steps:
        raise ValueError(
            f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}"
        )
    return warmup_steps, total_steps, peak_lr, _validate.finite("final_lr", final_lr), initial_lr


# --- public functions ---------------------------------------------------------


def step_decay(step, initial_lr, drop=0.5, every=10):
    r"""Step decay: multiply the rate by ``drop`` every ``every`` steps.

    .. math:: \eta_t = \eta_0 \cdot \mathrm{drop}^{\lfloor t / \mathrm{every} \rfloor}

    Same as Keras ``ExponentialDecay(initial_lr, every, drop, staircase=True)``.

    Args:
        step: training step(s) ``t >= 0`` (number or array).
        initial_lr: rate ``eta_0 > 0`` for the first ``every`` steps.
        drop: factor in (0, 1] applied at each boundary.
        every: steps between drops, ``>= 1`` (use ``steps_per_epoch * k`` for
            a drop every ``k`` epochs).

    Returns:
        ``float`` for a scalar step, float64 array of ``step``'s shape otherwise.

    Raises:
        ValueError: ``initial_lr <= 0``, ``drop`` not in (0, 1], ``every < 1``
            or a negative step.

    Example:
        >>> step_decay([0, 9, 10, 25], initial_lr=0.1)
        array([0.1  , 0.1  , 0.05 , 0.025])
    """
    return _evaluate(_step_decay, step, *_check_step_decay(initial_lr, drop, every))


def cosine_decay(step, total_steps, initial_lr, final_lr=0.0):
    r"""Cosine decay from ``initial_lr`` to ``final_lr`` over ``total_steps``.

    .. math:: \eta_t = \eta_T + (\eta_0 - \eta_T)\,\tfrac12\bigl(1 + \cos(\pi \min(t, T)/T)\bigr)

    Constant ``final_lr`` after ``total_steps``.  Equals Keras
    ``CosineDecay(initial_lr, total_steps, alpha=final_lr / initial_lr)`` and
    ``optax.cosine_decay_schedule(initial_lr, total_steps, final_lr / initial_lr)``.

    Args:
        step: training step(s) ``t >= 0``.
        total_steps: length ``T >= 1`` of the decay, in steps (batches).
        initial_lr: rate at step 0.
        final_lr: rate at and after ``total_steps``.

    Raises:
        ValueError: ``total_steps < 1`` or a negative step.

    Example:
        >>> cosine_decay([0, 50, 100, 150], total_steps=100, initial_lr=0.1)
        array([0.1 , 0.05, 0.  , 0.  ])
    """
    return _evaluate(_cosine_decay, step, *_check_cosine(total_steps, initial_lr, final_lr))


def linear_warmup(step, warmup_steps, peak_lr, initial_lr=0.0):
    r"""Linear warm-up from ``initial_lr`` to ``peak_lr`` over ``warmup_steps``.

    .. math:: \eta_t = \eta_\mathrm{init} + (\eta_\mathrm{peak} - \eta_\mathrm{init})\,\min(t, W)/W

    ``peak_lr`` from ``warmup_steps`` on (and everywhere when ``warmup_steps == 0``).
    Equals ``optax.linear_schedule(initial_lr, peak_lr, warmup_steps)``.

    Raises:
        ValueError: ``warmup_steps`` negative or not an integer, or a negative step.

    Example:
        >>> linear_warmup([0, 5, 10, 20], warmup_steps=10, peak_lr=0.1)
        array([0.  , 0.05, 0.1 , 0.1 ])
    """
    return _evaluate(_linear_warmup, step, *_check_warmup(warmup_steps, peak_lr, initial_lr))


def warmup_cosine(step, warmup_steps, total_steps, peak_lr, final_lr=0.0, initial_lr=0.0):
    r"""Linear warm-up, then cosine decay; ``total_steps`` *includes* the warm-up.

    For ``t < W``: :func:`linear_warmup`; for ``t >= W``:
    :func:`cosine_decay` of ``t - W`` from ``peak_lr`` to ``final_lr`` over
    ``total_steps - W`` steps; ``final_lr`` after ``total_steps``.  Exactly
    ``optax.warmup_cosine_decay_schedule(initial_lr, peak_lr, W, total_steps,
    final_lr)`` (Keras ``CosineDecay`` counts its ``decay_steps`` *after* the
    warm-up instead).  If ``W == total_steps`` the rate is ``final_lr`` from
    step ``W`` on.

    Raises:
        ValueError: ``warmup_steps`` negative or ``> total_steps``,
            ``total_steps < 1``, or a negative step.

    Example:
        >>> warmup_cosine([0, 5, 10, 55, 100, 120], 10, 100, peak_lr=0.1)
        array([0.  , 0.05, 0.1 , 0.05, 0.  , 0.  ])
    """
    params = _check_warmup_cosine(warmup_steps, total_steps, peak_lr, final_lr, initial_lr)
    return _evaluate(_warmup_cosine, step, *params)


def plateau_schedule(val_losses, initial_lr, factor=0.1, patience=10, min_delta=1e-4,
                     cooldown=0, min_lr=0.0):
    r"""The learning rates ``keras.callbacks.ReduceLROnPlateau`` sets, epoch by epoch.

    Entry ``e`` is the rate in force after the end of epoch ``e`` (the rate
    epoch ``e + 1`` trains with) when ``val_losses`` are reported one epoch at
    a time to ``ReduceLROnPlateau(monitor="val_loss", mode="min", factor,
    patience, min_delta, cooldown, min_lr)`` on a model whose optimizer starts
    at ``initial_lr`` (He et al., CVPR 2016, divided the rate by 10 when the
    error plateaued).  With best-so-far loss :math:`b` (initially none), wait
    counter :math:`w`, cooldown counter :math:`c` and rate :math:`\eta`, the
    end of epoch :math:`e` with loss :math:`v_e` does, in this order
    (Keras 3.15, ``callbacks/reduce_lr_on_plateau.py``):

    1. if :math:`c > 0`: :math:`c \leftarrow c - 1,\ w \leftarrow 0`;
    2. if :math:`e` is the first epoch or :math:`v_e + \delta < b`
       (an improvement): :math:`b \leftarrow v_e,\ w \leftarrow 0`;
    3. else, if :math:`c = 0`: :math:`w \leftarrow w + 1`, and if
       :math:`w \ge \mathrm{patience}` and :math:`\eta > \eta_\min`:
       :math:`\eta \leftarrow \max(\eta \cdot \mathrm{factor}, \eta_\min),\
       c \leftarrow \mathrm{cooldown},\ w \leftarrow 0`.

    Because step 1 runs before step 3 in the same epoch, the counter is held
    at 0 for ``cooldown - 1`` epochs after a reduction, not ``cooldown``
    (``cooldown=1`` behaves like ``cooldown=0``).  Keras keeps the rate in a
    float32 variable and compares the Python floats ``fit`` reports as float32
    tensors; this function rounds at the same places, so it reproduces the
    callback bit for bit.  A ``nan`` loss is never an improvement (as in Keras).

    Args:
        val_losses: the monitored loss of each epoch (1-D sequence of numbers).
        initial_lr: the optimizer's rate before training, ``> 0``.
        factor: multiplier of a reduction, in (0, 1).
        patience: epochs without improvement before a reduction, an integer ``>= 1``.
        min_delta: an improvement must beat the best loss by more than this, ``>= 0``.
        cooldown: epochs after a reduction before counting resumes (see above), an
            integer ``>= 0``.
        min_lr: the rate is never reduced below this, ``>= 0``.

    Returns:
        float64 array of ``len(val_losses)`` rates (float32 values, as Keras stores them).

    Raises:
        ValueError: a parameter outside the range above, or ``val_losses`` not 1-D.

    Example:
        >>> plateau_schedule([1.0, 0.9, 0.95, 0.92, 0.91, 0.8], initial_lr=0.1, patience=2)
        array([0.1 , 0.1 , 0.1 , 0.01, 0.01, 0.01])
    """
    losses = np.asarray(val_losses, dtype=np.float64)
    if losses.ndim != 1:
        raise ValueError(f"val_losses must be a 1-D sequence, got shape {losses.shape}")
    initial_lr = _validate.positive("initial_lr", initial_lr)
    try:
        factor = float(factor)
    except (TypeError, ValueError):
        raise TypeError(f"factor must be a real number, got {factor!r}") from None
    if not 0 < factor < 1:  # also false for nan
        raise ValueError(f"factor must be in (0, 1), got {factor!r}")
    patience = _integer_at_least("patience", patience, 1)
    min_delta = _validate.non_negative("min_delta", min_delta)
    cooldown = _integer_at_least("cooldown", cooldown, 0)
    min_lr = _validate.non_negative("min_lr", min_lr)

    f32 = np.float32
    lr = float(f32(initial_lr))  # the optimizer's float32 variable
    best, wait, cool = None, 0, 0
    rates = np.empty(len(losses), dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        for e, loss in enumerate(losses.tolist()):
            if cool > 0:
                cool -= 1
                wait = 0
            if best is None or f32(loss + min_delta) < f32(best):  # ops.less on float32 tensors
                best, wait = loss, 0
            elif cool == 0:
                wait += 1
                if wait >= patience and f32(lr) > f32(min_lr):
                    lr = float(f32(max(lr * factor, min_lr)))  # assigned to the float32 variable
                    cool, wait = cooldown, 0
            rates[e] = lr
    return rates


def _integer_at_least(name, value, minimum):
    try:
        return _validate.integer_at_least(name, value, minimum)
    except ValueError:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}") from None


# --- Keras adapters -----------------------------------------------------------


class _FormulaSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Evaluates one of the formulas above with ``keras.ops`` (float32)."""

    _formula = None
    _params: tuple[str, ...] = ()

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        values = [getattr(self, name) for name in self._params]
        return keras.ops.cast(type(self)._formula(keras.ops, step, *values), "float32")

    def get_config(self):
        return {name: getattr(self, name) for name in self._params}


@keras.saving.register_keras_serializable(package="nnh")
class StepDecay(_FormulaSchedule):
    """Keras adapter of :func:`step_decay` (same arguments, minus ``step``).

    Example:
        >>> opt = keras.optimizers.SGD(learning_rate=StepDecay(0.1, drop=0.5, every=100))
    """

    _formula = staticmethod(_step_decay)
    _params = ("initial_lr", "drop", "every")

    def __init__(self, initial_lr, drop=0.5, every=10):
        self.initial_lr, self.drop, self.every = _check_step_decay(initial_lr, drop, every)


@keras.saving.register_keras_serializable(package="nnh")
class WarmupCosine(_FormulaSchedule):
    """Keras adapter of :func:`warmup_cosine`: a ``LearningRateSchedule``.

    ``__call__(step)`` returns a float32 tensor equal to
    ``warmup_cosine(step, ...)``; ``get_config``/``from_config`` round-trip, so
    a model compiled with it can be saved and reloaded.

    Example:
        >>> schedule = WarmupCosine(warmup_steps=100, total_steps=1000, peak_lr=0.1)
        >>> optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=0.9)
    """

    _formula = staticmethod(_warmup_cosine)
    _params = ("warmup_steps", "total_steps", "peak_lr", "final_lr", "initial_lr")

    def __init__(self, warmup_steps, total_steps, peak_lr, final_lr=0.0, initial_lr=0.0):
        (
            self.warmup_steps,
            self.total_steps,
            self.peak_lr,
            self.final_lr,
            self.initial_lr,
        ) = _check_warmup_cosine(warmup_steps, total_steps, peak_lr, final_lr, initial_lr)
