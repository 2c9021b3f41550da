r"""Weight penalties (L2, L1, elastic net): values and gradients, in NumPy.

A weight penalty adds a term :math:`\Omega(w)` to the training loss so that
the optimizer trades fit against the size of the weights.  The functions here
follow the **Keras convention** of ``keras.regularizers.L2/L1/L1L2`` exactly
(no factor ½):

.. math::

    \Omega_{L2}(w) = \lambda \sum_i w_i^2, \qquad
    \Omega_{L1}(w) = \lambda \sum_i |w_i|, \qquad
    \Omega_{EN}(w) = \lambda_1 \sum_i |w_i| + \lambda_2 \sum_i w_i^2 .

Many textbooks write the L2 penalty as :math:`\tfrac{\lambda}{2}\|w\|^2`;
Keras' ``l2`` is that textbook :math:`\lambda / 2`.

**One array or a list of arrays.**  ``weights`` is either

* a ``list`` or ``tuple`` whose elements are *all* ``numpy.ndarray`` — a list
  of weight arrays, e.g. ``model.get_weights()`` or :func:`kernels`; the
  penalty is the sum over the arrays (an empty list/tuple is an empty list of
  arrays, penalty 0); or
* anything else — converted with ``numpy.asarray`` to **one** array: a
  NumPy array of any shape, a Python number, a (nested) list of numbers such
  as ``[1.0, -2.0]``.  A ragged nested list (``[[1, 2], [3]]``, or a list
  mixing arrays and lists) is ambiguous and raises ``ValueError``; convert the
  items to arrays first (``[np.asarray(a) for a in ...]``) to mean a list.

Keras variables (``model.trainable_weights``) are not ``numpy.ndarray``: pass
``model.get_weights()`` or :func:`kernels` instead.

Values are accumulated in float64; penalties are returned as Python
``float``, gradients as float64 arrays.  Inputs are never modified.  A
coefficient (``lam``, ``l1``, ``l2``) must be finite and ``>= 0``, otherwise
``ValueError`` names it (a non-number: ``TypeError``).  Non-finite *weights*
are not an error: the penalty is then ``nan``/``inf``, as in Keras.

Keras computes the same sums in the weights' dtype (float32 for a model) and
turns the coefficient into a float32 tensor first, so the two agree to
float32 precision.

Two neighbours of the penalties, for the chapter's comparisons:
:func:`adam_l2_update` and :func:`adamw_update` compute one update of Keras'
``Adam`` on an L2-penalised loss and of ``AdamW`` (decoupled weight decay),
and :func:`early_stopping` decides, from a list of validation losses, where
``keras.callbacks.EarlyStopping(restore_best_weights=True)`` stops and which
epoch it restores.

References:
    Krogh & Hertz, *A Simple Weight Decay Can Improve Generalization*, NIPS
    1992 (L2 / weight decay).  Tibshirani, *Regression Shrinkage and Selection
    via the Lasso*, JRSS-B 1996 (L1).  Zou & Hastie, *Regularization and
    Variable Selection via the Elastic Net*, JRSS-B 2005.  Loshchilov & Hutter,
    *Decoupled Weight Decay Regularization*, ICLR 2019 (AdamW).  Keras 3
    ``keras/src/regularizers/regularizers.py`` (``L1``, ``L2``, ``L1L2``),
    ``keras/src/optimizers/adam.py``, ``adamw.py`` and ``base_optimizer.py``
    (``_apply_weight_decay``), ``keras/src/callbacks/early_stopping.py``.
"""

from __future__ import annotations

import keras
import numpy as np

from nnh import _validate

__all__ = [
    "l2_penalty",
    "l1_penalty",
    "elastic_net_penalty",
    "l2_penalty_grad",
    "soft_threshold",
    "sparsity",
    "kernels",
    "adamw_update",
    "adam_l2_update",
    "early_stopping",
]


# --- input handling -------------------------------------------------------------


def _is_list_of_arrays(weights) -> bool:
    """The documented rule: a list/tuple whose elements are all ``np.ndarray``."""
    return isinstance(weights, (list, tuple)) and all(
        isinstance(item, np.ndarray) for item in weights
    )


def _as_float64(value, name: str = "weights") -> np.ndarray:
    """One array of real numbers as float64 (a copy is never written to)."""
    try:
        array = np.asarray(value)
    except ValueError:
        raise ValueError(
            f"{name} must be one array or a list/tuple of numpy arrays; got a ragged "
            "sequence (convert its items with np.asarray to pass a list of arrays)"
        ) from None
    if array.dtype == object:
        raise ValueError(
            f"{name} must be one array or a list/tuple of numpy arrays; got a ragged "
            "or non-numeric sequence"
        )
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    return array.astype(np.float64, copy=False)


def _arrays(weights) -> list[np.ndarray]:
    """``weights`` as a list of float64 arrays (one element for a single array)."""
    if _is_list_of_arrays(weights):
        return [_as_float64(item) for item in weights]
    return [_as_float64(weights)]


def _sum_abs(arrays) -> float:
    return float(sum(np.sum(np.abs(a)) for a in arrays))


def _sum_squares(arrays) -> float:
    return float(sum(np.sum(np.square(a)) for a in arrays))


# --- penalties ------------------------------------------------------------------


def l2_penalty(weights, lam) -> float:
    r"""L2 penalty (ridge, weight decay) :math:`\lambda \sum_i w_i^2`.

    Equals the loss that ``keras.regularizers.L2(lam)`` adds for these
    weights (Keras convention: no factor ½) (Krogh & Hertz, 1992).

    Args:
        weights: one array (any shape, or a number / list of numbers) or a
            list/tuple of numpy arrays (see the module docstring).
        lam: coefficient :math:`\lambda`, finite and ``>= 0``.

    Returns:
        The penalty as a Python ``float`` (summed over all arrays).

    Raises:
        ValueError: ``lam`` negative, nan or infinite; ragged ``weights``.

    Example:
        >>> l2_penalty([1.0, -2.0], lam=0.1)
        0.5
        >>> l2_penalty([np.ones((2, 2)), np.array([3.0])], lam=0.01)
        0.13
    """
    lam = _validate.non_negative("lam", lam)
    return lam * _sum_squares(_arrays(weights))


def l1_penalty(weights, lam) -> float:
    r"""L1 penalty (lasso) :math:`\lambda \sum_i |w_i|`.

    Equals the loss that ``keras.regularizers.L1(lam)`` adds (Tibshirani, 1996).

    Args:
        weights: one array or a list/tuple of numpy arrays (module docstring).
        lam: coefficient :math:`\lambda`, finite and ``>= 0``.

    Returns:
        The penalty as a Python ``float``.

    Raises:
        ValueError: ``lam`` negative, nan or infinite; ragged ``weights``.

    Example:
        >>> l1_penalty([1.0, -2.0], lam=0.1)
        0.30000000000000004
    """
    lam = _validate.non_negative("lam", lam)
    return lam * _sum_abs(_arrays(weights))


def elastic_net_penalty(weights, l1, l2) -> float:
    r"""Elastic-net penalty :math:`\lambda_1 \sum_i |w_i| + \lambda_2 \sum_i w_i^2`.

    Equals the loss that ``keras.regularizers.L1L2(l1, l2)`` adds (Zou & Hastie, 2005); ``l2=0`` gives :func:`l1_penalty`, ``l1=0`` gives
    :func:`l2_penalty`.

    Args:
        weights: one array or a list/tuple of numpy arrays (module docstring).
        l1: coefficient of the L1 part, finite and ``>= 0``.
        l2: coefficient of the L2 part, finite and ``>= 0``.

    Returns:
        The penalty as a Python ``float``.

    Raises:
        ValueError: ``l1`` or ``l2`` negative, nan or infinite; ragged ``weights``.

    Example:
        >>> elastic_net_penalty([1.0, -2.0], l1=0.1, l2=0.1)
        0.8
    """
    l1 = _validate.non_negative("l1", l1)
    l2 = _validate.non_negative("l2", l2)
    arrays = _arrays(weights)
    return l1 * _sum_abs(arrays) + l2 * _sum_squares(arrays)


def l2_penalty_grad(weights, lam):
    r"""Gradient of :func:`l2_penalty`: :math:`\partial \Omega / \partial w = 2\lambda w`.

    One SGD step on the penalty alone multiplies every weight by
    :math:`1 - 2\eta\lambda` (learning rate :math:`\eta`): the "weight decay"
    of Krogh & Hertz (1992).

    Args:
        weights: one array or a list/tuple of numpy arrays (module docstring).
        lam: coefficient :math:`\lambda`, finite and ``>= 0``.

    Returns:
        Same structure as ``weights``: for one array a float64 ``ndarray`` of
        its shape (0-d for a number); for a list (tuple) of arrays a list
        (tuple) of float64 arrays of the same shapes.  ``weights`` is not
        modified.

    Raises:
        ValueError: ``lam`` negative, nan or infinite; ragged ``weights``.

    Example:
        >>> l2_penalty_grad([1.0, -2.0], lam=0.1)
        array([ 0.2, -0.4])
        >>> l2_penalty_grad([np.ones(2), np.zeros((1, 1))], lam=0.5)
        [array([1., 1.]), array([[0.]])]
    """
    lam = _validate.non_negative("lam", lam)
    def grad(array):
        return np.asarray(2.0 * lam * array)  # an array also for 0-d input

    if _is_list_of_arrays(weights):
        grads = [grad(_as_float64(item)) for item in weights]
        return tuple(grads) if isinstance(weights, tuple) else grads
    return grad(_as_float64(weights))


# --- helpers for the chapter ------------------------------------------------------


def soft_threshold(weights, threshold):
    r"""Soft-thresholding, the proximal step of the L1 penalty.

    .. math:: \operatorname{prox}(w) = \operatorname{sign}(w)\,\max(|w| - t, 0)

    It solves :math:`\min_v \tfrac12 (v - w)^2 + t\,|v|` per entry: every
    weight moves ``t`` towards zero and stops *exactly* at zero if it would
    cross it — why L1 (lasso) solutions are sparse (Tibshirani, 1996).  A
    gradient step with :math:`t = \eta\lambda` instead overshoots zero and
    oscillates around it.

    Args:
        weights: one array or a list/tuple of numpy arrays (module docstring).
        threshold: ``t``, finite and ``>= 0``.

    Returns:
        Same structure as ``weights`` (float64 arrays); the input is not modified.

    Example:
        >>> soft_threshold([-1.5, -0.2, 0.0, 0.3, 2.0], threshold=0.5)
        array([-1. , -0. ,  0. ,  0. ,  1.5])
    """
    t = _validate.non_negative("threshold", threshold)

    def prox(array):
        return np.asarray(np.sign(array) * np.maximum(np.abs(array) - t, 0.0))

    if _is_list_of_arrays(weights):
        out = [prox(_as_float64(item)) for item in weights]
        return tuple(out) if isinstance(weights, tuple) else out
    return prox(_as_float64(weights))


def sparsity(weights, tol=0.0) -> float:
    """Fraction of weights with ``|w| <= tol`` (``tol=0``: exact zeros).

    Args:
        weights: one array or a list/tuple of numpy arrays (module docstring);
            all entries of all arrays count equally.
        tol: tolerance, finite and ``>= 0``.

    Returns:
        A Python ``float`` in [0, 1].

    Raises:
        ValueError: ``tol`` negative or not finite; ``weights`` holds no value.

    Example:
        >>> sparsity([0.0, 1e-4, -0.5, 2.0], tol=1e-3)
        0.5
    """
    tol = _validate.non_negative("tol", tol)
    arrays = _arrays(weights)
    total = sum(a.size for a in arrays)
    if total == 0:
        raise ValueError("weights must contain at least one value, got none")
    return float(sum(np.count_nonzero(np.abs(a) <= tol) for a in arrays) / total)


def kernels(model: keras.Model) -> list[np.ndarray]:
    """The kernel (weight matrix, no bias) of every layer that has one, as numpy arrays.

    Layers are visited in order, descending into nested models; these are the
    tensors a ``kernel_regularizer`` penalises, so for a model built with
    ``kernel_regularizer=keras.regularizers.L2(lam)`` on every layer,
    ``l2_penalty(kernels(model), lam)`` equals ``sum(model.losses)``.

    Example:
        >>> import nnh
        >>> [k.shape for k in kernels(nnh.models.mlp(hidden=(32,)))]
        [(64, 32), (32, 10)]
    """
    found = []
    for layer in model.layers:
        if hasattr(layer, "layers"):
            found += kernels(layer)
        elif getattr(layer, "kernel", None) is not None:
            found.append(np.array(layer.kernel.numpy()))
    return found


# --- decoupled weight decay vs an L2 penalty under Adam -----------------------------


def _adam_arrays(w, grad, m, v):
    arrays = [np.array(_as_float64(x, name), dtype=np.float64)  # copies: inputs stay untouched
              for x, name in ((w, "w"), (grad, "grad"), (m, "m"), (v, "v"))]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"w, grad, m and v must have the same shape, got {[a.shape for a in arrays]}")
    return arrays


def _adam_step(w, grad, m, v, step, learning_rate, beta_1, beta_2, epsilon):
    """Keras' Adam update (``keras/src/optimizers/adam.py``) of float64 copies."""
    step = _validate.integer_at_least("step", step, 1)
    learning_rate = _validate.non_negative("learning_rate", learning_rate)
    beta_1 = _validate.in_half_open_unit("beta_1", beta_1, low_open=False)
    beta_2 = _validate.in_half_open_unit("beta_2", beta_2, low_open=False)
    epsilon = _validate.non_negative("epsilon", epsilon)
    alpha = learning_rate * np.sqrt(1.0 - beta_2**step) / (1.0 - beta_1**step)
    m = m + (1.0 - beta_1) * (grad - m)
    v = v + (1.0 - beta_2) * (grad**2 - v)
    return w - alpha * m / (np.sqrt(v) + epsilon), m, v


def adamw_update(w, grad, m, v, step, learning_rate, weight_decay, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7):
    r"""One update of ``keras.optimizers.AdamW`` for one variable (decoupled weight decay).

    Keras (``BaseOptimizer._apply_weight_decay``, then ``Adam.update_step``)
    first decays the weight, then takes the Adam step with the gradient alone:

    .. math::

        w &\leftarrow w - \eta\,\mathrm{wd}\; w, \\
        m &\leftarrow m + (1 - \beta_1)(g - m), \qquad
        v \leftarrow v + (1 - \beta_2)(g^2 - v), \\
        w &\leftarrow w - \alpha\, \frac{m}{\sqrt{v} + \epsilon}, \qquad
        \alpha = \eta\, \frac{\sqrt{1 - \beta_2^{\,t}}}{1 - \beta_1^{\,t}} .

    The decay :math:`\eta\,\mathrm{wd}\,w` is *not* divided by
    :math:`\sqrt{v}`: every weight shrinks by the same factor
    :math:`1 - \eta\,\mathrm{wd}`.  Keras (and PyTorch) multiply
    ``weight_decay`` by the learning rate :math:`\eta`; Loshchilov & Hutter
    (*Decoupled Weight Decay Regularization*, ICLR 2019, Algorithm 2) multiply
    their :math:`\lambda` by the schedule multiplier :math:`\eta_t` only, so
    their :math:`\lambda` is Keras' :math:`\eta\,\mathrm{wd}` at
    :math:`\eta_t = 1`.

    Args:
        w: the weight(s), an array of any shape or a number.
        grad: the gradient of the loss, same shape as ``w``.
        m, v: first and second moment estimates before this update (zeros
            before the first), same shape as ``w``.
        step: the 1-based number of this update (:math:`t`), an integer ``>= 1``.
        learning_rate: :math:`\eta`, finite and ``>= 0``.
        weight_decay: :math:`\mathrm{wd}`, finite and ``>= 0``.
        beta_1, beta_2: moment decay rates in [0, 1).
        epsilon: added to :math:`\sqrt{v}`, finite and ``>= 0``.

    Returns:
        ``(w_new, m_new, v_new)``, float64 arrays of the shape of ``w``; the
        inputs are not modified.

    Raises:
        ValueError: a parameter outside its range, or shapes that differ.

    Example:
        >>> w, m, v = adamw_update(1.0, 0.0, 0.0, 0.0, step=1, learning_rate=0.1, weight_decay=0.5)
        >>> float(w)  # the gradient is 0: only the decay acts, w × (1 − 0.1·0.5)
        0.95
    """
    weight_decay = _validate.non_negative("weight_decay", weight_decay)
    learning_rate = _validate.non_negative("learning_rate", learning_rate)
    w, grad, m, v = _adam_arrays(w, grad, m, v)
    w = w - learning_rate * weight_decay * w
    return _adam_step(w, grad, m, v, step, learning_rate, beta_1, beta_2, epsilon)


def adam_l2_update(w, grad, m, v, step, learning_rate, l2, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    r"""One update of ``keras.optimizers.Adam`` (no decay) on a loss with the Keras
    L2 penalty :math:`\lambda \sum w^2` (``keras.regularizers.L2(l2)``).

    The penalty enters only through its gradient, :math:`g + 2\lambda w`,
    which then goes through Adam's per-weight normalisation:

    .. math::

        \tilde g = g + 2\lambda w, \quad
        m \leftarrow m + (1 - \beta_1)(\tilde g - m), \quad
        v \leftarrow v + (1 - \beta_2)(\tilde g^2 - v), \quad
        w \leftarrow w - \alpha\, \frac{m}{\sqrt{v} + \epsilon}

    with :math:`\alpha` as in :func:`adamw_update`.  A weight whose data
    gradient is large has a large :math:`\sqrt{v}` and is decayed less than one
    whose data gradient is small (Loshchilov & Hutter, ICLR 2019).

    Args:
        w, grad, m, v, step, learning_rate, beta_1, beta_2, epsilon: as in
            :func:`adamw_update` (``grad`` is the gradient of the data loss alone).
        l2: the Keras L2 coefficient :math:`\lambda`, finite and ``>= 0``.

    Returns:
        ``(w_new, m_new, v_new)``, float64 arrays of the shape of ``w``; the
        inputs are not modified.

    Raises:
        ValueError: a parameter outside its range, or shapes that differ.

    Example:
        >>> w, m, v = adam_l2_update(1.0, 0.0, 0.0, 0.0, step=1, learning_rate=0.1, l2=0.5)
        >>> round(float(w), 6)  # the penalty's gradient alone, normalised: a step of ≈ η
        0.9
    """
    l2 = _validate.non_negative("l2", l2)
    w, grad, m, v = _adam_arrays(w, grad, m, v)
    return _adam_step(w, grad + 2.0 * l2 * w, m, v, step, learning_rate, beta_1, beta_2, epsilon)


# --- early stopping -----------------------------------------------------------------


def early_stopping(val_losses, patience, min_delta=0.0):
    r"""Where ``keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
    min_delta=min_delta, restore_best_weights=True)`` stops, and which epoch it restores.

    Epochs are numbered from 0.  Epoch :math:`e` *improves* when
    :math:`\ell_e + \delta < \ell_{best}` (the best loss so far,
    :math:`\delta` = ``min_delta``); the first epoch always improves.
    Training stops at the end of the first epoch :math:`e = b + p` that is
    ``patience`` epochs after the last improvement :math:`b`.  As in Keras
    (``keras/src/callbacks/early_stopping.py``, ``monitor_callback.py``), the
    comparison is made in float32; ``baseline=None``, ``start_from_epoch=0``.

    Args:
        val_losses: the validation loss after each epoch (a 1-d sequence of
            numbers, at least one).
        patience: :math:`p`, an integer ``>= 1``.
        min_delta: :math:`\delta`, finite and ``>= 0``.

    Returns:
        ``(stop_epoch, best_epoch)``: the epoch at whose end training stops
        (``None`` if it runs through every epoch of ``val_losses``), and the
        last improving epoch up to the stop — the weights Keras restores.

    Raises:
        ValueError: ``patience < 1``, ``min_delta`` negative or not finite,
            ``val_losses`` empty or not 1-d.

    Example:
        >>> early_stopping([1.0, 0.8, 0.7, 0.75, 0.72, 0.9, 0.6], patience=2)
        (4, 2)
        >>> early_stopping([1.0, 0.8, 0.7, 0.75, 0.72, 0.9, 0.6], patience=5)
        (None, 6)
    """
    patience = _validate.integer_at_least("patience", patience, 1)
    min_delta = _validate.non_negative("min_delta", min_delta)
    losses = _as_float64(val_losses, "val_losses")
    if losses.ndim != 1 or losses.size == 0:
        raise ValueError(f"val_losses must be a non-empty 1-d sequence, got shape {losses.shape}")
    best, best_epoch = None, 0
    for epoch, loss in enumerate(losses.tolist()):
        if best is None or np.float32(loss + min_delta) < np.float32(best):
            best, best_epoch = loss, epoch
        elif epoch - best_epoch >= patience:
            return epoch, best_epoch
    return None, best_epoch
