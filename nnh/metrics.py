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

References:
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
]


def _check(probs, labels=None):
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 1:
        raise ValueError(f"probs must have shape (N, K) with K >= 1, got shape {np.shape(probs)}")
    if p.shape[0] == 0:
        raise ValueError("probs must hold at least one prediction (N >= 1)")
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise ValueError("probs must have entries in [0, 1]")
    if labels is None:
        return p, None
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D array of integer class ids, got {labels!r:.80}")
    if len(y) != len(p):
        raise ValueError(f"labels and probs must have the same length, got {len(y)} and {len(p)}")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"labels must be class ids in [0, {p.shape[1] - 1}]")
    return p, y


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
