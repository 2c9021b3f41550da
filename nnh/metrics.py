r"""Calibration metrics: does a classifier's confidence match its accuracy?

A classifier that predicts class :math:`\hat y_i = \arg\max_k p_{ik}` with
confidence :math:`c_i = \max_k p_{ik}` is *calibrated* if, among the examples
predicted with confidence :math:`c`, a fraction :math:`c` is right.  The
expected calibration error (Naeini et al. 2015; Guo et al. 2017) measures the
gap with :math:`M` equal-width confidence bins
:math:`B_m = \{i : (m-1)/M < c_i \le m/M\}`:

.. math::
    \mathrm{ECE} = \sum_{m=1}^{M} \frac{|B_m|}{N}\,
    \bigl|\mathrm{acc}(B_m) - \mathrm{conf}(B_m)\bigr| ,

where :math:`\mathrm{acc}(B_m)` is the fraction of correct predictions in the
bin and :math:`\mathrm{conf}(B_m)` their mean confidence; empty bins
contribute nothing.

Bin edges are ``numpy.linspace(0, 1, n_bins + 1)`` and every bin is closed on
the right, ``(edges[m], edges[m+1]]``, as in Guo et al.  The first bin also
takes a confidence of exactly 0 — which a probability vector cannot have (its
largest entry is at least ``1/K``) but an all-zero row of scores can; nothing
is dropped.

Proper scoring rules sit beside the ECE (:func:`negative_log_likelihood`,
:func:`brier_score`), and :func:`fit_temperature` fits the one-parameter
recalibration of Guo et al., temperature scaling, on held-out logits.

References:
    Brier, *Verification of Forecasts Expressed in Terms of Probability*,
    Monthly Weather Review 78(1), 1950.
    Naeini, Cooper & Hauskrecht, *Obtaining Well Calibrated Probabilities
    Using Bayesian Binning*, AAAI 2015.
    Guo, Pleiss, Sun & Weinberger, *On Calibration of Modern Neural
    Networks*, ICML 2017.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from nnh import _validate

__all__ = [
    "ReliabilityCurve",
    "bin_edges",
    "reliability_curve",
    "expected_calibration_error",
    "mean_confidence",
    "accuracy",
    "negative_log_likelihood",
    "brier_score",
    "softmax",
    "fit_temperature",
]


def _matrix(values, name: str, row: str) -> np.ndarray:
    """``values`` as a float64 ``(N, K)`` array with ``N, K >= 1`` (a ``row`` is one of the N)."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] < 1:
        raise ValueError(f"{name} must have shape (N, K) with K >= 1, got shape {np.shape(values)}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one {row} (N >= 1)")
    return array


def _check(probs, labels=None):
    p = _matrix(probs, "probs", "prediction")
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise ValueError("probs must have entries in [0, 1]")
    return p, None if labels is None else _check_labels(labels, p.shape, "probs")


def _check_labels(labels, shape: tuple[int, int], against: str) -> np.ndarray:
    """``labels`` as integer class ids, one per row of an ``(N, K)`` array named ``against``."""
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D array of integer class ids, got {labels!r:.80}")
    if len(y) != shape[0]:
        raise ValueError(f"labels and {against} must have the same length, got {len(y)} and {shape[0]}")
    if y.min() < 0 or y.max() >= shape[1]:
        raise ValueError(f"labels must be class ids in [0, {shape[1] - 1}]")
    return y


def bin_edges(n_bins: int = 15) -> np.ndarray:
    """The ``n_bins + 1`` edges ``0, 1/n, 2/n, …, 1`` of the confidence bins."""
    n_bins = _validate.integer_at_least("n_bins", n_bins, 1)
    return np.linspace(0.0, 1.0, n_bins + 1)


class ReliabilityCurve(NamedTuple):
    """Per-bin statistics of a reliability diagram (one entry per bin).

    ``confidence`` and ``accuracy`` are ``nan`` for an empty bin.
    """

    edges: np.ndarray  # (n_bins + 1,)
    confidence: np.ndarray  # (n_bins,) mean max-probability in the bin
    accuracy: np.ndarray  # (n_bins,) fraction of correct predictions in the bin
    count: np.ndarray  # (n_bins,) int, number of predictions in the bin


def reliability_curve(probs, labels, n_bins: int = 15) -> ReliabilityCurve:
    """Mean confidence, accuracy and size of each equal-width confidence bin.

    Args:
        probs: predicted class probabilities, shape ``(N, K)``, entries in [0, 1].
        labels: true integer class ids, shape ``(N,)``.
        n_bins: number of bins ``M >= 1``.

    Returns:
        :class:`ReliabilityCurve`; bin ``m`` holds the predictions with
        confidence in ``(edges[m], edges[m+1]]`` (bin 0 also holds 0).

    Raises:
        ValueError: ``n_bins < 1``, ``probs`` not 2-D, or ``labels`` not
            integer ids of the same length.

    Example:
        >>> curve = reliability_curve([[0.9, 0.1], [0.3, 0.7]], [0, 0], n_bins=2)
        >>> curve.count, curve.accuracy
        (array([0, 2]), array([nan, 0.5]))
    """
    edges = bin_edges(n_bins)
    p, y = _check(probs, labels)
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    # searchsorted(side="left") gives i with edges[i-1] < c <= edges[i]
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, len(edges) - 2)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=confidence, minlength=n_bins) / count
        mean_acc = np.bincount(index, weights=correct, minlength=n_bins) / count
    empty = count == 0
    mean_conf[empty] = np.nan
    mean_acc[empty] = np.nan
    return ReliabilityCurve(edges, mean_conf, mean_acc, count)


def expected_calibration_error(probs, labels, n_bins: int = 15) -> float:
    r"""Expected calibration error with ``n_bins`` equal-width confidence bins.

    .. math::
        \mathrm{ECE} = \sum_m \frac{|B_m|}{N}\,\bigl|\mathrm{acc}(B_m) - \mathrm{conf}(B_m)\bigr|

    (Guo et al. 2017, eq. 3; bins as in the module docstring; 15 bins is their
    default).  0 for a perfectly calibrated classifier, at most 1.

    Args:
        probs: predicted class probabilities, shape ``(N, K)``.
        labels: true integer class ids, shape ``(N,)``.
        n_bins: number of bins ``M >= 1``.

    Returns:
        The ECE as a Python ``float`` in [0, 1].

    Raises:
        ValueError: ``n_bins < 1``, ``probs`` not 2-D with entries in [0, 1],
            or ``labels`` not integer ids of the same length.

    Example:
        >>> expected_calibration_error([[0.9, 0.1], [0.8, 0.2]], [0, 1], n_bins=10)
        0.45

        (one right at confidence 0.9: gap 0.1; one wrong at 0.8: gap 0.8;
        each weighs 1/2.)
    """
    curve = reliability_curve(probs, labels, n_bins)
    filled = curve.count > 0
    weights = curve.count[filled] / curve.count.sum()
    gaps = np.abs(curve.accuracy[filled] - curve.confidence[filled])
    return float(np.sum(weights * gaps))


def mean_confidence(probs) -> float:
    """Average of the largest predicted probability, ``mean_i max_k p_ik``."""
    p, _ = _check(probs)
    return float(p.max(axis=1).mean())


def accuracy(probs, labels) -> float:
    """Fraction of examples whose arg-max class is the true class."""
    p, y = _check(probs, labels)
    return float(np.mean(p.argmax(axis=1) == y))


def negative_log_likelihood(probs, labels) -> float:
    """Mean cross-entropy of the true classes, ``−mean_i log p_i,y_i`` (natural log), with
    each probability clipped to ``[1e-12, 1]`` so that a zero gives a large finite loss.
    The same as ``keras.losses.SparseCategoricalCrossentropy()`` on probabilities.

    Example:
        >>> round(negative_log_likelihood(np.array([[0.5, 0.5], [0.1, 0.9]]), np.array([0, 1])), 4)
        0.3993
    """
    p, y = _check(probs, labels)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1.0))))


def brier_score(probs, labels) -> float:
    r"""Multi-class Brier score: mean squared distance between the predicted
    probabilities and the one-hot labels,

    .. math::
        \mathrm{BS} = \frac{1}{N} \sum_{i=1}^{N} \sum_{k=1}^{K} (p_{ik} - y_{ik})^2 ,

    with :math:`y_{ik} = 1` if example :math:`i` is of class :math:`k`, else 0.
    This is Brier's (1950) original definition, summed over the :math:`K`
    classes and *not* halved: it lies in [0, 2] (0 for certain right
    predictions, 2 for certain wrong ones).  It equals scikit-learn's
    ``brier_score_loss(..., scale_by_half=False)``; the binary "mean of
    :math:`(p - y)^2` of the positive class" is half of it for :math:`K = 2`.
    Like the NLL it is a strictly proper scoring rule: its expectation is
    lowest when the predicted probabilities are the true ones.

    Args:
        probs: predicted class probabilities, shape ``(N, K)``, entries in [0, 1].
        labels: true integer class ids, shape ``(N,)``.

    Returns:
        The Brier score as a Python ``float``.

    Raises:
        ValueError: ``probs`` not 2-D with entries in [0, 1], or ``labels`` not
            integer ids of the same length.

    Example:
        >>> round(brier_score([[0.8, 0.2], [0.5, 0.5]], [0, 1]), 6)  # (.2² + .2² + .5² + .5²) / 2
        0.29
    """
    p, y = _check(probs, labels)
    target = np.zeros_like(p)
    target[np.arange(len(y)), y] = 1.0
    return float(np.mean(np.sum((p - target) ** 2, axis=1)))


def _check_logits(logits, labels=None):
    z = _matrix(logits, "logits", "example")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits must be finite (no nan or inf)")
    return z, None if labels is None else _check_labels(labels, z.shape, "logits")


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    r"""Class probabilities from logits, softened or sharpened by a temperature:

    .. math::
        p_{ik} = \frac{\exp(z_{ik} / T)}{\sum_j \exp(z_{ij} / T)} .

    :math:`T > 1` moves every row towards uniform, :math:`T < 1` towards
    one-hot; the order of the entries of a row, hence its arg-max, never
    changes.  Adding a constant to a row of logits does not change its
    probabilities, so ``log(p)`` is a valid logit vector of ``p``.
    Computed in float64 with the row maximum subtracted (no overflow).

    Args:
        logits: real scores, shape ``(N, K)``.
        temperature: ``T > 0``.

    Returns:
        ``(N, K)`` float64 probabilities; each row sums to 1.

    Raises:
        ValueError: ``logits`` not 2-D and finite, or ``temperature <= 0``.

    Example:
        >>> softmax([[0.0, np.log(3)]]).round(3)
        array([[0.25, 0.75]])
        >>> softmax([[0.0, np.log(3)]], temperature=np.log(3) / np.log(2)).round(3)  # 3 → 2
        array([[0.333, 0.667]])
    """
    z, _ = _check_logits(logits)
    temperature = _validate.positive("temperature", temperature)
    s = z / temperature
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _mean_nll_of_logits(z: np.ndarray, y: np.ndarray, log_t: float) -> float:
    """Mean ``−log softmax(z / T)[i, y_i]`` for ``T = exp(log_t)``, without clipping.

    Per row, with ``d_k = (z_k − z_y) / T`` and ``m = max(0, max_{k≠y} d_k)``, the loss is
    ``m + log(exp(−m) + Σ_{k≠y} exp(d_k − m))``: no overflow, and ``log1p`` keeps the
    precision of a tiny loss (``m = 0``) that ``logsumexp(s) − s_y`` would round to 0."""
    rows = np.arange(len(y))
    d = (z - z[rows, y][:, None]) * np.exp(-log_t)
    d[rows, y] = -np.inf  # leave out the true class
    m = np.maximum(d.max(axis=1), 0.0)
    rest = np.exp(d - m[:, None]).sum(axis=1)
    loss = np.where(m > 0, m + np.log(np.exp(-m) + rest), np.log1p(rest))
    return float(np.mean(loss))


def fit_temperature(logits, labels, *, bounds: tuple[float, float] = (1e-3, 1e3)) -> float:
    r"""Temperature scaling (Guo et al. 2017, section 4.2): the one scalar
    :math:`T` that minimises the mean negative log-likelihood of
    :math:`\mathrm{softmax}(z / T)` on held-out data,

    .. math::
        T^\star = \arg\min_{T > 0} \; -\frac{1}{N} \sum_{i=1}^{N}
        \log \frac{\exp(z_{i y_i} / T)}{\sum_k \exp(z_{ik} / T)} .

    Fit it on a validation set, never on the test set.  :math:`T > 1` softens
    an over-confident model, :math:`T < 1` sharpens an under-confident one; the
    arg-max, hence the accuracy, does not change.

    The NLL is a convex function of :math:`1/T` (a log-sum-exp of linear
    functions minus a linear one), so it has one minimum.  It is found over
    :math:`\log T` in ``log(bounds)`` by bounded Brent search
    (``scipy.optimize.minimize_scalar(method="bounded")``, tolerance 1e-10 on
    :math:`\log T`), and the two ends of the interval are also tried.  If the
    minimum lies outside ``bounds`` an end is returned: the lower end when
    every example's true class has the strictly largest logit (perfectly
    separated data: the NLL keeps falling as :math:`T \to 0`, so a small
    validation set the model gets all right gives no usable temperature), the
    upper end when the true-class logits are on average no higher than the
    others (the NLL falls towards :math:`\log K` as :math:`T \to \infty`).
    Logits that are equal within every row give the same NLL, :math:`\log K`,
    for every :math:`T`.

    Args:
        logits: real scores before the softmax, shape ``(N, K)`` (or
            log-probabilities: they differ from the logits by a constant per
            row, which the softmax ignores).
        labels: true integer class ids, shape ``(N,)``.
        bounds: ``(T_min, T_max)`` with ``0 < T_min < T_max < inf``.

    Returns:
        :math:`T^\star` as a Python ``float`` in ``bounds``.

    Raises:
        ValueError: ``logits`` not 2-D and finite, ``labels`` not integer ids
            of the same length, or bad ``bounds``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> z = rng.normal(size=(20000, 5)) * 2               # the true logits
        >>> y = np.array([rng.choice(5, p=p) for p in softmax(z)])
        >>> round(fit_temperature(3 * z, y), 1)               # an over-confident model
        3.0
    """
    from scipy.optimize import minimize_scalar

    z, y = _check_logits(logits, labels)
    try:
        t_min, t_max = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be a pair (T_min, T_max), got {bounds!r}") from None
    if not (0 < t_min < t_max < np.inf):
        raise ValueError(f"bounds must satisfy 0 < T_min < T_max < inf, got {bounds!r}")
    lo, hi = np.log(t_min), np.log(t_max)
    others = z.copy()
    others[np.arange(len(y)), y] = -np.inf
    if np.all(z[np.arange(len(y)), y] > others.max(axis=1)):  # separated: the NLL falls as T -> 0
        return t_min
    result = minimize_scalar(lambda t: _mean_nll_of_logits(z, y, t), bounds=(lo, hi), method="bounded",
                             options={"xatol": 1e-10, "maxiter": 1000})
    candidates = [(float(result.fun), float(result.x)), (_mean_nll_of_logits(z, y, lo), lo),
                  (_mean_nll_of_logits(z, y, hi), hi)]
    best = min(candidates, key=lambda c: c[0])[1]
    return float(np.clip(np.exp(best), t_min, t_max))
