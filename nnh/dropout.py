r"""Dropout: random masks, inverted scaling, a Keras layer and Monte-Carlo dropout.

Dropout (Srivastava et al., *Dropout: A Simple Way to Prevent Neural Networks
from Overfitting*, JMLR 15(56):1929–1958, 2014) sets every unit of a layer to
zero, independently for each training example, with probability ``rate`` —
the **drop** probability, as in Keras ``Dropout(rate)``
(``keras/src/layers/regularization/dropout.py``).  The paper's ``p`` is the
opposite, the probability of *retaining* a unit (``r_j ~ Bernoulli(p)``), so
its ``p = 0.5`` (hidden) and ``p = 0.8`` (inputs) are Keras rates 0.5 and 0.2.  A layer of ``n`` units has
``2**n`` possible masks, so training with dropout trains an exponential family
of sub-networks that share their weights.

This module uses the *inverted* form that Keras (and PyTorch) implement: at
training time the kept units are scaled by ``1 / (1 - rate)``,

.. math:: \tilde{x}_i = \frac{m_i\, x_i}{1 - p}, \qquad m_i \sim \mathrm{Bernoulli}(1 - p),

so that :math:`\mathbb{E}[\tilde{x}_i] = x_i` and the layer is the identity
at inference (the paper instead scales the *weights* by the retention
probability ``1 - rate`` at test time; the two are equivalent for the
expected activation).

Pure NumPy functions first (:func:`dropout_mask`, :func:`inverted_dropout`,
:func:`count_subnetworks`), then the Keras layer :class:`InvertedDropout` and
the Monte-Carlo dropout helpers of Gal & Ghahramani, *Dropout as a Bayesian
Approximation*, ICML 2016 (:func:`mc_dropout_predict`, :func:`mc_summary`,
:func:`predictive_entropy`).
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import keras
import numpy as np

from nnh import _validate

__all__ = [
    "dropout_mask",
    "inverted_dropout",
    "count_subnetworks",
    "InvertedDropout",
    "mc_dropout_predict",
    "MCSummary",
    "mc_summary",
    "predictive_entropy",
]


# --- validation -----------------------------------------------------------------


def _check_rate(rate) -> float:
    if isinstance(rate, (bool, np.bool_)):
        raise ValueError(f"rate must be a number in [0, 1), got {rate!r}")
    if not isinstance(rate, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"rate must be a real number in [0, 1), got {rate!r}")
    return _validate.in_half_open_unit("rate", rate, low_open=False)


def _check_shape(shape) -> tuple[int, ...]:
    dims = (shape,) if isinstance(shape, (numbers.Integral, np.integer)) else shape
    try:
        dims = tuple(dims)
    except TypeError:
        raise TypeError(f"shape must be an int or a tuple of ints, got {shape!r}") from None
    for d in dims:
        if isinstance(d, (bool, np.bool_)) or not isinstance(d, (numbers.Integral, np.integer)):
            raise TypeError(f"shape must be an int or a tuple of ints, got {shape!r}")
        if d < 0:
            raise ValueError(f"shape must have non-negative entries, got {shape!r}")
    return tuple(int(d) for d in dims)


def _check_seed(seed):
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (numbers.Integral, np.integer)):
        raise TypeError(f"seed must be None or an int, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be None or an int >= 0, got {seed!r}")
    return int(seed)


# --- pure NumPy ------------------------------------------------------------------


def dropout_mask(shape, rate, rng):
    """A random keep-mask: ``True`` where a unit is **kept**.

    Every entry is kept independently with probability ``1 - rate``
    (``m_i ~ Bernoulli(1 - rate)``), as in Srivastava et al. (2014), whose
    retention probability ``p`` is ``1 - rate``; ``rate`` is the *drop*
    probability, as in Keras ``Dropout(rate)``.  The mask is
    ``rng.random(shape) >= rate``, so ``rate == 0`` keeps everything.

    Args:
        shape: int or tuple of ints, the shape of the mask (e.g.
            ``(batch, units)``: a fresh mask for every example).
        rate: drop probability in [0, 1).
        rng: a :class:`numpy.random.Generator`; the same seeded generator
            gives the same mask.

    Returns:
        Boolean array of ``shape``.

    Raises:
        ValueError: ``rate`` not in [0, 1), or a negative dimension.
        TypeError: ``rng`` is not a ``numpy.random.Generator`` or ``shape``
            is not made of ints.

    Example:
        >>> mask = dropout_mask((2, 5), 0.5, np.random.default_rng(0))
        >>> mask.shape, mask.dtype
        ((2, 5), dtype('bool'))
        >>> bool(dropout_mask(1000, 0.0, np.random.default_rng(0)).all())
        True
    """
    shape = _check_shape(shape)
    rate = _check_rate(rate)
    rng = _validate.generator("rng", rng)
    return np.asarray(rng.random(shape) >= rate)


def _float_array(x) -> np.ndarray:
    array = np.asarray(x)
    if array.dtype.kind == "f":
        return array
    if array.dtype.kind in "biu":
        return array.astype(np.float64)
    raise TypeError(f"x must be an array of real numbers, got dtype {array.dtype}")


def inverted_dropout(x, rate, rng, training=True):
    r"""Inverted dropout of ``x``: drop with probability ``rate``, scale the rest.

    .. math:: \mathrm{dropout}(x)_i = \frac{m_i\, x_i}{1 - p}, \qquad m_i \sim \mathrm{Bernoulli}(1 - p)

    at training time, and :math:`x` unchanged at inference, so the expected
    output equals the input in both modes.  This is what Keras
    ``Dropout(rate)`` computes (``keras/src/layers/regularization/dropout.py``);
    Srivastava et al. (2014) scale by the retention probability :math:`1 - p`
    (their :math:`p`) at test time instead.

    Args:
        x: array-like of real numbers (never modified).
        rate: drop probability ``p`` in [0, 1).
        rng: a :class:`numpy.random.Generator` (the mask is
            ``dropout_mask(x.shape, rate, rng)``).
        training: ``False`` returns ``x`` unchanged (inference).

    Returns:
        A new float array of ``x``'s shape (``x``'s float dtype, float64 for
        integer or bool input).  With ``training=False`` or ``rate == 0`` it
        equals ``x`` and no random numbers are drawn.

    Raises:
        ValueError: ``rate`` not in [0, 1).
        TypeError: ``rng`` is not a ``numpy.random.Generator``.

    Example:
        >>> y = inverted_dropout(np.ones((2, 4)), 0.5, np.random.default_rng(0))
        >>> sorted(set(y.ravel().tolist()))
        [0.0, 2.0]
        >>> inverted_dropout(np.ones(3), 0.5, np.random.default_rng(0), training=False)
        array([1., 1., 1.])
    """
    rate = _check_rate(rate)
    rng = _validate.generator("rng", rng)
    array = _float_array(x)
    if not training or rate == 0:
        return array.copy()
    mask = dropout_mask(array.shape, rate, rng)
    return np.asarray(array * mask / array.dtype.type(1 - rate))


def count_subnetworks(n_units) -> int:
    """Number of distinct dropout masks (thinned sub-networks) of ``n_units`` units.

    Each of the ``n`` droppable units is either kept or dropped, so there are
    ``2**n`` sub-networks, all sharing one set of weights (Srivastava et al.,
    2014, section 1).

    Args:
        n_units: number of units that dropout may drop, a non-negative
            integer (Python or NumPy int; floats and bools are rejected, so a
            large count is never silently rounded).

    Returns:
        ``2 ** n_units`` as an exact Python ``int``.

    Raises:
        ValueError: ``n_units`` is negative, a float or a bool.
        TypeError: ``n_units`` is not a number.

    Example:
        >>> count_subnetworks(3)
        8
        >>> len(str(count_subnetworks(512)))  # two hidden layers of 256 units
        155
    """
    if isinstance(n_units, (bool, np.bool_)):
        raise ValueError(f"n_units must be a non-negative integer, got {n_units!r}")
    if isinstance(n_units, (numbers.Integral, np.integer)):
        if n_units < 0:
            raise ValueError(f"n_units must be a non-negative integer (>= 0), got {n_units!r}")
        return 2 ** int(n_units)
    if isinstance(n_units, (numbers.Real, np.floating)):
        raise ValueError(f"n_units must be a non-negative integer, got {n_units!r}")
    raise TypeError(f"n_units must be a non-negative integer, got {n_units!r}")


# --- Keras ------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="nnh")
class InvertedDropout(keras.layers.Layer):
    """Keras layer of :func:`inverted_dropout`; behaves like ``keras.layers.Dropout``.

    At training time (``training=True``, which ``model.fit`` sets) every entry
    is kept where ``uniform[0, 1) >= rate`` — independently, with probability
    ``1 - rate`` — and scaled by ``1 / (1 - rate)``; the other entries are
    zero.  When ``training`` is falsy (``model.predict``, ``model.evaluate``,
    a plain call) the layer is the identity.  The mask is drawn with
    ``keras.random.uniform`` from the layer's own
    ``keras.random.SeedGenerator``, so each call draws a fresh mask and a
    fixed ``seed`` makes the sequence of masks reproducible.

    Args:
        rate: drop probability in [0, 1) (Keras' ``Dropout(rate)`` convention).
        seed: ``None`` or an int >= 0 seeding the layer's mask generator.
        **kwargs: base ``Layer`` arguments (``name``, ``dtype``, ...).

    Raises:
        ValueError: ``rate`` not in [0, 1) or a negative ``seed``.
        TypeError: ``seed`` is not ``None`` or an int.

    Example:
        >>> layer = InvertedDropout(0.5, seed=1)
        >>> y = keras.ops.convert_to_numpy(layer(np.ones((2, 8)), training=True))
        >>> sorted(set(y.ravel().tolist())) in ([0.0, 2.0], [0.0], [2.0])
        True
        >>> keras.ops.convert_to_numpy(layer(np.ones((1, 3)))).tolist()  # inference
        [[1.0, 1.0, 1.0]]
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = _check_rate(rate)
        self.seed = _check_seed(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self.supports_masking = True
        self.built = True  # no weights to create; the generator's state is tracked

    def call(self, inputs, training=None):
        if not training or self.rate == 0:
            return inputs
        noise = keras.random.uniform(
            keras.ops.shape(inputs), dtype="float32", seed=self.seed_generator
        )
        keep = keras.ops.cast(noise >= self.rate, inputs.dtype)
        return inputs * keep / keras.ops.cast(1.0 - self.rate, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


# --- Monte-Carlo dropout -------------------------------------------------------------


def _seed_states(model):
    """The state variables of every ``keras.random.SeedGenerator`` in ``model``."""
    return [v for v in model.variables if v.name == "seed_generator_state"]


def mc_dropout_predict(model, x, n_samples=30, seed=None, batch_size=None):
    """Monte-Carlo dropout: ``n_samples`` stochastic forward passes with dropout on.

    Gal & Ghahramani (ICML 2016) read a network trained with dropout as an
    approximate Bayesian model: keeping dropout *on* at test time and
    averaging ``T`` passes approximates the predictive distribution, and the
    spread of the ``T`` predictions measures the model's uncertainty.  Every
    pass is ``model(x, training=True)``, so each draws fresh masks from every
    dropout layer.

    ``training=True`` also switches layers such as ``BatchNormalization`` to
    batch statistics, and in Keras 3 such a call *updates* their moving
    averages; use this with models whose only training-mode behaviour is
    dropout.

    Args:
        model: a Keras model (typically with ``Dropout``/``InvertedDropout``
            layers) returning class probabilities of shape ``(N, K)``.
        x: inputs, ``N`` examples.
        n_samples: number of passes ``T >= 1``.
        seed: ``None`` (continue the dropout layers' random streams) or an int:
            every ``SeedGenerator`` of the model is set to ``(seed, i)`` for
            the passes and restored afterwards, so the result is reproducible
            and the model is left as it was.
        batch_size: ``None`` (the whole of ``x`` in one call) or the number
            of examples per call (the masks are drawn per call, so the same
            ``seed`` with another ``batch_size`` gives other, equally valid,
            samples).

    Returns:
        float array ``(T, N, K)``: the prediction of each pass.

    Raises:
        ValueError: ``n_samples < 1``, ``batch_size < 1`` or a negative ``seed``.

    Example:
        >>> probs = mc_dropout_predict(model, x_test, n_samples=30, seed=0)  # doctest: +SKIP
        >>> probs.mean(axis=0).argmax(axis=1)    # MC-averaged prediction  # doctest: +SKIP
    """
    n_samples = _validate.integer_at_least("n_samples", n_samples, 1)
    seed = _check_seed(seed)
    if batch_size is not None:
        batch_size = _validate.integer_at_least("batch_size", batch_size, 1)
    x = np.asarray(x)
    states = _seed_states(model) if seed is not None else []
    saved = [np.array(v.numpy()) for v in states]
    if seed is not None:
        for i, v in enumerate(states):
            v.assign(np.array([seed, 1_000_003 * (i + 1)], dtype=saved[i].dtype))
    try:
        passes = []
        step = max(len(x), 1) if batch_size is None else batch_size
        for _ in range(n_samples):
            parts = [
                keras.ops.convert_to_numpy(model(x[i : i + step], training=True))
                for i in range(0, max(len(x), 1), step)
            ]
            passes.append(np.concatenate(parts, axis=0))
    finally:
        for v, value in zip(states, saved):
            v.assign(value)
    return np.stack(passes)


class MCSummary(NamedTuple):
    """Summary of ``T`` Monte-Carlo predictions of ``N`` examples."""

    mean: np.ndarray  #: ``(N, K)`` mean probability over the passes
    predicted: np.ndarray  #: ``(N,)`` class of the largest mean probability
    spread: np.ndarray  #: ``(N,)`` std over the passes of the predicted class's probability
    agreement: np.ndarray  #: ``(N,)`` fraction of passes whose argmax is ``predicted``


def mc_summary(probs):
    """Mean prediction and its spread over Monte-Carlo passes.

    Args:
        probs: ``(T, N, K)`` probabilities, e.g. from :func:`mc_dropout_predict`.

    Returns:
        :class:`MCSummary`: ``mean[n] = probs[:, n].mean(0)``,
        ``predicted[n] = argmax(mean[n])``, ``spread[n]`` the (population)
        standard deviation over the ``T`` passes of
        ``probs[:, n, predicted[n]]`` and ``agreement[n]`` the fraction of
        passes whose own argmax equals ``predicted[n]``.

    Raises:
        ValueError: ``probs`` is not 3-D or has no pass.

    Example:
        >>> probs = np.array([[[0.9, 0.1]], [[0.5, 0.5]], [[0.7, 0.3]]])  # T=3, N=1, K=2
        >>> s = mc_summary(probs)
        >>> s.mean.round(2).tolist(), s.predicted.tolist(), s.spread.round(3).tolist()
        ([[0.7, 0.3]], [0], [0.163])
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 3 or probs.shape[0] < 1:
        raise ValueError(f"probs must have shape (T, N, K) with T >= 1, got {probs.shape}")
    mean = probs.mean(axis=0)
    predicted = mean.argmax(axis=1)
    chosen = np.take_along_axis(probs, predicted[None, :, None], axis=2)[..., 0]  # (T, N)
    agreement = (probs.argmax(axis=2) == predicted[None, :]).mean(axis=0)
    return MCSummary(mean, predicted, chosen.std(axis=0), agreement)


def predictive_entropy(samples):
    r"""Entropy of the Monte-Carlo mean prediction, in nats.

    With ``T`` passes :math:`p^{(t)}(y \mid x_n)` (e.g. from
    :func:`mc_dropout_predict`), the predictive distribution is their mean
    :math:`\bar p_n = \frac1T \sum_t p^{(t)}(\cdot \mid x_n)` and

    .. math:: H_n = -\sum_{k=1}^{K} \bar p_{nk} \log \bar p_{nk}, \qquad 0 \log 0 = 0,

    the *predictive entropy* used with Monte-Carlo dropout (Gal, *Uncertainty
    in Deep Learning*, PhD thesis, University of Cambridge, 2016), the same
    quantity as ``scipy.stats.entropy(mean, axis=1)``.  It lies in
    :math:`[0, \log K]`: 0 when every pass puts all its mass on one class,
    :math:`\log K` for the uniform mean.  Unlike :func:`mc_summary`'s spread it
    is also large when all passes agree on a flat prediction.

    Args:
        samples: ``(T, N, K)`` probabilities, ``T >= 1`` passes of ``N``
            examples over ``K >= 1`` classes; every entry in [0, 1] and every
            ``samples[t, n]`` summing to 1 (to 1e-3, enough for float32
            softmax outputs).

    Returns:
        float64 array ``(N,)``, the entropy of each example's mean prediction.

    Raises:
        ValueError: ``samples`` is not 3-D, has no pass or no class, or is not
            made of probabilities.

    Example:
        >>> samples = np.array([[[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]])  # T=2, N=2
        >>> predictive_entropy(samples).round(4).tolist()  # certain; passes disagree -> log 2
        [0.0, 0.6931]
    """
    probs = np.asarray(samples, dtype=np.float64)
    if probs.ndim != 3 or probs.shape[0] < 1 or probs.shape[2] < 1:
        raise ValueError(f"samples must have shape (T, N, K) with T >= 1 and K >= 1, got {probs.shape}")
    if not np.all(np.isfinite(probs)) or probs.min(initial=0.0) < 0 or probs.max(initial=0.0) > 1:
        raise ValueError("samples must be probabilities: every entry in [0, 1]")
    if probs.size and not np.allclose(probs.sum(axis=2), 1.0, rtol=0, atol=1e-3):
        raise ValueError("samples must be probabilities: every samples[t, n] must sum to 1")
    mean = probs.mean(axis=0)
    terms = np.where(mean > 0, -mean * np.log(np.where(mean > 0, mean, 1.0)), 0.0)
    return np.maximum(terms.sum(axis=1), 0.0)
