"""Data augmentation, label smoothing and mixup: NumPy references and a Keras data feed.

Design: every transformation is a pure NumPy function of a batch and a
:class:`numpy.random.Generator` (``rng``), so the same seed gives the same
batch, the random decisions can be replayed (re-seed the generator) and the
functions can be tested without a model.  Inputs are never modified in place.
Images are arrays shaped ``(N, H, W, C)`` ("channels last", as in Keras).

* :func:`random_flip`, :func:`random_crop`, :func:`random_shift` — label-
  preserving input transformations (for *some* labels: a mirrored 2 is not a
  2);
* :func:`smooth_labels` (Szegedy et al. 2016, the form of Keras'
  ``CategoricalCrossentropy(label_smoothing=ε)``) and :func:`epsilon_hot` (the
  binary "ε-hot" form);
* :func:`mixup_batch` (Zhang et al. 2018) and :func:`cutmix_batch` (Yun et al.
  2019);
* :class:`AugmentedBatches` — a ``keras.utils.PyDataset`` that applies any of
  them batch by batch during ``Model.fit`` — and :func:`fit_augmented`, which
  trains a classifier on it.

References:
    Shorten & Khoshgoftaar, *A survey on image data augmentation for deep
    learning*, Journal of Big Data 6(60), 2019.
    Szegedy et al., *Rethinking the Inception Architecture for Computer
    Vision*, CVPR 2016 (label smoothing, section 7).
    Zhang, Cisse, Dauphin & Lopez-Paz, *mixup: Beyond Empirical Risk
    Minimization*, ICLR 2018.
    Yun, Han, Oh, Chun, Choe & Yoo, *CutMix: Regularization Strategy to Train
    Strong Classifiers with Localizable Features*, ICCV 2019.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import keras
import numpy as np

from nnh import _validate, metrics
from nnh.data import Split
from nnh.training import STEPS_PER_EXECUTION, RunResult, batches, make_optimizer, train_and_evaluate

__all__ = [
    "random_flip",
    "random_crop",
    "random_shift",
    "smooth_labels",
    "epsilon_hot",
    "mixup_batch",
    "cutmix_batch",
    "one_hot",
    "apply_with_probability",
    "AugmentedBatches",
    "TestSetMonitor",
    "fit_augmented",
]


# --- checks --------------------------------------------------------------------


def _images(images, name: str = "images") -> np.ndarray:
    array = np.asarray(images)
    if array.ndim != 4:
        raise ValueError(f"{name} must have shape (N, H, W, C), got shape {array.shape}")
    return array


def _float_dtype(array: np.ndarray):
    """Keep a floating dtype, promote integers and booleans to float64."""
    return array.dtype if np.issubdtype(array.dtype, np.floating) else np.float64


# --- input transformations --------------------------------------------------------


def random_flip(images, rng, horizontal: bool = True, vertical: bool = False) -> np.ndarray:
    """Flip each image, independently, with probability 1/2 along each enabled axis.

    A horizontal flip mirrors left and right (reverses axis 2, the width
    ``W``); a vertical flip mirrors top and bottom (reverses axis 1, the
    height ``H``).  Keras' ``RandomFlip("horizontal")`` does the same inside a
    model.

    Random draws, in this order: ``rng.random(N) < 0.5`` for the horizontal
    flips (if enabled), then the same for the vertical flips (if enabled).  So
    a generator re-seeded with the same seed replays the same decisions, and
    applying the function twice with such generators gives back the input
    (a flip is its own inverse).

    Args:
        images: array of shape ``(N, H, W, C)``.
        rng: a :class:`numpy.random.Generator`.
        horizontal: flip left-right with probability 1/2.
        vertical: flip up-down with probability 1/2.

    Returns:
        A new array of the same shape and dtype.

    Raises:
        ValueError: ``images`` is not 4-D.
        TypeError: ``rng`` is not a Generator.

    Example:
        >>> x = np.arange(4).reshape(1, 1, 4, 1)
        >>> random_flip(x, np.random.default_rng(2))[0, 0, :, 0]  # rng.random() = 0.26 < 0.5
        array([3, 2, 1, 0])
    """
    images = _images(images)
    rng = _validate.generator("rng", rng)
    out = images.copy()
    n = len(images)
    if horizontal:
        flip = rng.random(n) < 0.5
        out[flip] = out[flip][:, :, ::-1]
    if vertical:
        flip = rng.random(n) < 0.5
        out[flip] = out[flip][:, ::-1]
    return out


def _crop_size(size, height: int, width: int) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
        exact = all(float(v) == int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be a pair of integers (h, w), got {size!r}") from None
    if not exact:
        raise ValueError(f"size must be a pair of integers (h, w), got {size!r}")
    if not (1 <= h <= height and 1 <= w <= width):
        raise ValueError(
            f"size must satisfy 1 <= h <= {height} and 1 <= w <= {width} "
            f"(the image size), got {tuple(size)!r}"
        )
    return h, w


def random_crop(images, size, rng) -> np.ndarray:
    """Cut an ``h × w`` window out of each image at its own random position.

    The top-left corner of the window of image ``n`` is
    ``(top[n], left[n])`` with ``top ~ U{0, …, H−h}`` and
    ``left ~ U{0, …, W−w}``, independently for every image.  Random draws, in
    this order: ``rng.integers(0, H−h+1, N)`` then ``rng.integers(0, W−w+1, N)``.
    (Keras' ``RandomCrop`` layer, by contrast, uses one position for the
    whole batch.)

    Args:
        images: array of shape ``(N, H, W, C)``.
        size: ``(h, w)``, with ``1 <= h <= H`` and ``1 <= w <= W``.
        rng: a :class:`numpy.random.Generator`.

    Returns:
        A new array of shape ``(N, h, w, C)`` and the dtype of ``images``.

    Raises:
        ValueError: ``images`` is not 4-D, or ``size`` is not a pair of
            integers within the image size.

    Example:
        >>> x = np.arange(16).reshape(1, 4, 4, 1)
        >>> random_crop(x, (2, 2), np.random.default_rng(0)).shape
        (1, 2, 2, 1)
    """
    images = _images(images)
    rng = _validate.generator("rng", rng)
    n, height, width, _ = images.shape
    h, w = _crop_size(size, height, width)
    top = rng.integers(0, height - h + 1, size=n)
    left = rng.integers(0, width - w + 1, size=n)
    rows = top[:, None] + np.arange(h)  # (N, h)
    cols = left[:, None] + np.arange(w)  # (N, w)
    return images[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def random_shift(images, max_shift: int, rng, fill=0) -> np.ndarray:
    """Translate each image by a random whole number of pixels, filling the border.

    The classic CIFAR recipe ("pad and crop"): pad every side with
    ``max_shift`` pixels of value ``fill``, then :func:`random_crop` back to
    ``H × W``; each image moves by ``dy, dx ~ U{−max_shift, …, max_shift}``.

    Args:
        images: array of shape ``(N, H, W, C)``.
        max_shift: largest shift in pixels, an integer ``>= 0``.
        rng: a :class:`numpy.random.Generator` (same draws as :func:`random_crop`).
        fill: value of the pixels that move in from outside.

    Returns:
        A new array of the shape and dtype of ``images``.

    Example:
        >>> x = np.ones((2, 8, 8, 1), dtype=np.float32)
        >>> random_shift(x, 1, np.random.default_rng(0)).shape
        (2, 8, 8, 1)
    """
    images = _images(images)
    shift = _validate.integer_at_least("max_shift", max_shift, 0)
    padded = np.pad(images, ((0, 0), (shift, shift), (shift, shift), (0, 0)),
                    constant_values=fill)
    return random_crop(padded, images.shape[1:3], rng)


def apply_with_probability(transform, p: float):
    """A transform that applies ``transform`` to each image with probability ``p``.

    The others are passed through unchanged, so the network still sees the
    original images about a fraction ``1 − p`` of the time.  Random draws: the
    draws of ``transform`` on the whole batch, then ``rng.random(N) < p``.

    Args:
        transform: function ``(images, rng) -> images`` of the same shape.
        p: probability in [0, 1].

    Returns:
        A function ``(images, rng) -> images``.

    Example:
        >>> shift = apply_with_probability(lambda x, rng: random_shift(x, 1, rng), 0.5)
        >>> shift(np.ones((3, 8, 8, 1)), np.random.default_rng(0)).shape
        (3, 8, 8, 1)
    """
    p = _validate.unit_interval("p", p)

    def maybe(images, rng):
        images = _images(images)
        changed = np.asarray(transform(images, rng))
        if changed.shape != images.shape:
            raise ValueError(
                f"transform must keep the shape of the images, {images.shape} -> {changed.shape}"
            )
        pick = rng.random(len(images)) < p
        return np.where(pick[:, None, None, None], changed, images)

    return maybe


# --- labels ---------------------------------------------------------------------------


def one_hot(labels, n_classes: int, dtype=np.float32) -> np.ndarray:
    """Integer class ids ``(N,)`` → one-hot rows ``(N, n_classes)``.

    Raises:
        ValueError: ``labels`` not 1-D integers in ``0 … n_classes−1``.
    """
    n_classes = _validate.integer_at_least("n_classes", n_classes, 1)
    labels = np.asarray(labels)
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
        raise ValueError(f"labels must be a 1-D array of integer class ids, got {labels!r}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must be in [0, {n_classes - 1}], got {labels.min()}..{labels.max()}")
    return np.eye(n_classes, dtype=dtype)[labels]


def smooth_labels(y_onehot, epsilon: float) -> np.ndarray:
    r"""Label smoothing for ``K`` classes (Szegedy et al. 2016, section 7).

    .. math:: \tilde y = y\,(1 - \varepsilon) + \varepsilon / K

    The target of the true class becomes ``1 − ε + ε/K``, every other class
    gets ``ε/K``; rows still sum to 1.  This is exactly what
    ``keras.losses.CategoricalCrossentropy(label_smoothing=ε)`` does to its
    targets before the cross-entropy.

    Args:
        y_onehot: one-hot (or soft) labels of shape ``(N, K)``, entries in
            [0, 1], each row summing to 1.
        epsilon: smoothing ``ε`` in [0, 1] (0: unchanged; 1: uniform).

    Returns:
        A new float array of shape ``(N, K)`` (the input's float dtype, or
        float64 for integer input).

    Raises:
        ValueError: ``epsilon`` not in [0, 1]; ``y_onehot`` not 2-D, or not
            rows of probabilities.

    Example:
        >>> smooth_labels(np.array([[0, 1, 0, 0]]), 0.2)
        array([[0.05, 0.85, 0.05, 0.05]])
    """
    eps = _validate.unit_interval("epsilon", epsilon)
    y = np.asarray(y_onehot)
    if y.ndim != 2 or y.shape[1] < 1:
        raise ValueError(f"y_onehot must have shape (N, K) with K >= 1, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.number) and y.dtype != bool:
        raise ValueError(f"y_onehot must be numeric, got dtype {y.dtype}")
    y = y.astype(_float_dtype(y))
    if y.size and (not np.all(np.isfinite(y)) or y.min() < 0 or y.max() > 1):
        raise ValueError("y_onehot must have entries in [0, 1]")
    tolerance = 1e-3 if y.dtype.itemsize < 4 else 1e-5 if y.dtype.itemsize == 4 else 1e-9
    if y.size and not np.allclose(y.sum(axis=1), 1.0, rtol=0, atol=tolerance):
        raise ValueError("y_onehot must have rows that sum to 1 (one-hot or soft labels)")
    k = y.shape[1]
    return y * (1 - eps) + eps / k


def epsilon_hot(y, epsilon: float) -> np.ndarray:
    r"""The "ε-hot" form of label smoothing for binary labels: 0 → ε, 1 → 1 − ε.

    .. math:: \tilde y = y\,(1 - 2\varepsilon) + \varepsilon

    Keras' ``BinaryCrossentropy(label_smoothing=s)`` uses
    ``y (1 − s) + s / 2`` (the ``K = 2`` case of :func:`smooth_labels`), so
    ``epsilon_hot(y, ε)`` equals Keras' smoothing with ``s = 2ε``.

    Only for binary labels: applied entry by entry to one-hot rows of
    ``K > 2`` classes, a row becomes one ``1 − ε`` and ``K − 1`` times ``ε``
    and sums to ``1 + (K − 2) ε``, so it is no longer a probability
    distribution.  For ``K`` classes use :func:`smooth_labels`
    (``ε/K`` for every class), whose rows sum to 1.

    Args:
        y: array (any shape) of labels, each 0 or 1.
        epsilon: ``ε`` in [0, 0.5) — at 0.5 both classes would get 0.5.

    Returns:
        A new float array of the shape of ``y`` (float64 unless ``y`` is a
        float array).

    Raises:
        ValueError: ``epsilon`` not in [0, 0.5); a label of ``y`` not 0 or 1.

    Example:
        >>> epsilon_hot(np.array([0, 1, 1]), 0.1)
        array([0.1, 0.9, 0.9])
        >>> round(float(epsilon_hot(np.eye(4)[2], 0.1).sum()), 6)  # K = 4: 1 + 2ε, not 1
        1.2
    """
    eps = _validate._real("epsilon", epsilon)
    if not 0 <= eps < 0.5:
        raise ValueError(f"epsilon must be in [0, 0.5), got {epsilon!r}")
    labels = np.asarray(y)
    if not (np.issubdtype(labels.dtype, np.number) or labels.dtype == bool):
        raise ValueError(f"y must hold 0/1 labels, got dtype {labels.dtype}")
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError("y must hold binary labels (every entry 0 or 1)")
    dtype = _float_dtype(labels)
    return np.where(labels == 1, 1 - eps, eps).astype(dtype)


# --- mixup ------------------------------------------------------------------------------------


def mixup_batch(x, y, alpha: float, rng):
    r"""Mixup (Zhang et al. 2018): convex combinations of pairs of examples.

    .. math::
        \lambda \sim \mathrm{Beta}(\alpha, \alpha), \quad
        \tilde x = \lambda x + (1 - \lambda)\, x_{\pi}, \quad
        \tilde y = \lambda y + (1 - \lambda)\, y_{\pi}

    with one ``λ`` for the whole batch and ``π`` a random permutation of the
    batch (the pairing of the authors' reference code).  Both weights are in
    [0, 1] and sum to 1, so a mixed image stays in the pixel range and a mixed
    label is still a probability vector (``x + λ x_j`` would be neither).
    Keras' ``keras.layers.MixUp`` draws one ``λ`` per *example* instead.

    Random draws, in this order: ``lam = rng.beta(alpha, alpha)``, then
    ``index = rng.permutation(N)``.

    Args:
        x: inputs, shape ``(N, ...)``.
        y: one-hot or soft labels, shape ``(N, K)`` (use ``(N, 1)`` for a
            binary target); integer class ids must be one-hot encoded first.
        alpha: ``α > 0``; small values put ``λ`` near 0 or 1 (little mixing),
            ``α = 1`` is uniform.
        rng: a :class:`numpy.random.Generator`.

    Returns:
        ``(x_mixed, y_mixed, lam, index)``: new arrays of the shapes of ``x``
        and ``y`` (float), ``lam`` a Python float in [0, 1], ``index`` the
        permutation (int array of length ``N``).

    Raises:
        ValueError: ``alpha <= 0``, ``y`` not 2-D, or ``x`` and ``y`` with
            different batch sizes.

    Example:
        >>> x, y = np.eye(2)[:, :, None], np.eye(2)
        >>> xm, ym, lam, index = mixup_batch(x, y, 0.2, np.random.default_rng(0))
        >>> np.allclose(ym.sum(axis=1), 1)
        True
    """
    alpha = _validate.positive("alpha", alpha)
    rng = _validate.generator("rng", rng)
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim < 1:
        raise ValueError(f"x must have a batch axis, got shape {x.shape}")
    if y.ndim != 2:
        raise ValueError(
            f"y must be one-hot or soft labels of shape (N, K), got shape {y.shape} "
            "(one-hot encode integer class ids first)"
        )
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same batch size, got {len(x)} and {len(y)}")
    lam = float(rng.beta(alpha, alpha))
    index = rng.permutation(len(x))
    x = x.astype(_float_dtype(x), copy=False)
    y = y.astype(_float_dtype(y), copy=False)
    x_mixed = lam * x + (1 - lam) * x[index]
    y_mixed = lam * y + (1 - lam) * y[index]
    return x_mixed, y_mixed, lam, index


def cutmix_batch(x, y, alpha: float, rng):
    r"""CutMix (Yun et al. 2019): paste a box of a partner image, mix the labels by area.

    .. math::
        \lambda_0 \sim \mathrm{Beta}(\alpha, \alpha), \quad
        h_0 = \mathrm{round}\bigl(H\sqrt{1 - \lambda_0}\bigr), \quad
        w_0 = \mathrm{round}\bigl(W\sqrt{1 - \lambda_0}\bigr),

        \tilde x = (1 - M) \odot x + M \odot x_{\pi}, \quad
        \lambda = 1 - \frac{h\,w}{H\,W}, \quad
        \tilde y = \lambda y + (1 - \lambda)\, y_{\pi}

    where ``M`` is 1 inside the box and 0 outside, and ``π`` a random
    permutation of the batch.  As in the authors' reference code, the box is
    centred on a uniformly random pixel ``(c_y, c_x)``, has the sides
    ``h_0 × w_0`` (rounded to the nearest integer, halves up) and is clipped to
    the image: rows ``top = clip(c_y − ⌊h_0/2⌋, 0, H)`` to
    ``clip(c_y − ⌊h_0/2⌋ + h_0, 0, H)`` (exclusive), the same for the columns.
    Clipping makes the box smaller, so the label weight ``λ`` is recomputed
    from the area actually pasted (``λ >= λ_0`` up to rounding).  One ``λ_0``,
    one box and one permutation serve the whole batch.  (Keras'
    ``keras.layers.CutMix`` draws a ``λ_0`` and a box per example and keeps
    every box inside the image.)

    Random draws, in this order: ``lam0 = rng.beta(alpha, alpha)``, then
    ``index = rng.permutation(N)``, then ``c_y = rng.integers(0, H)`` and
    ``c_x = rng.integers(0, W)``.

    Args:
        x: images, shape ``(N, H, W, C)``.
        y: one-hot or soft labels, shape ``(N, K)``.
        alpha: ``α > 0`` of the Beta distribution (Yun et al. use 1).
        rng: a :class:`numpy.random.Generator`.

    Returns:
        ``(x_mixed, y_mixed, lam, index, box)``: ``x_mixed`` a new array of
        the shape and dtype of ``x``; ``y_mixed`` a new float array of the
        shape of ``y``; ``lam`` a Python float in [0, 1], the fraction of each
        image that is kept; ``index`` the permutation; ``box`` the pasted
        rectangle ``(top, left, height, width)`` as Python ints (height or
        width may be 0: nothing pasted, ``lam = 1``).

    Raises:
        ValueError: ``alpha <= 0``, ``x`` not 4-D, ``y`` not 2-D or with a
            number of rows different from ``len(x)``.

    Example:
        >>> x = np.stack([np.zeros((4, 4, 1)), np.ones((4, 4, 1))])
        >>> x_mixed, y_mixed, lam, index, box = cutmix_batch(x, np.eye(2), 1.0, np.random.default_rng(1))
        >>> box, lam, index
        ((2, 0, 2, 3), 0.625, array([1, 0]))
        >>> x_mixed[0, :, :, 0]  # rows 2-3, columns 0-2 come from x[1]
        array([[0., 0., 0., 0.],
               [0., 0., 0., 0.],
               [1., 1., 1., 0.],
               [1., 1., 1., 0.]])
        >>> y_mixed[0]
        array([0.625, 0.375])
    """
    alpha = _validate.positive("alpha", alpha)
    rng = _validate.generator("rng", rng)
    x = _images(x, "x")
    y = np.asarray(y)
    if y.ndim != 2 or len(y) != len(x):
        raise ValueError(
            f"y must be one-hot or soft labels of shape (N, K) with N = len(x) = {len(x)}, "
            f"got shape {y.shape}"
        )
    n, height, width, _ = x.shape
    lam0 = float(rng.beta(alpha, alpha))
    index = rng.permutation(n)
    cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
    ratio = math.sqrt(1.0 - lam0)
    h0, w0 = math.floor(height * ratio + 0.5), math.floor(width * ratio + 0.5)
    top, bottom = (int(np.clip(v, 0, height)) for v in (cy - h0 // 2, cy - h0 // 2 + h0))
    left, right = (int(np.clip(v, 0, width)) for v in (cx - w0 // 2, cx - w0 // 2 + w0))
    x_mixed = x.copy()
    x_mixed[:, top:bottom, left:right] = x[index, top:bottom, left:right]
    lam = 1.0 - (bottom - top) * (right - left) / (height * width)
    y = y.astype(_float_dtype(y), copy=False)
    y_mixed = lam * y + (1 - lam) * y[index]
    return x_mixed, y_mixed, lam, index, (top, left, bottom - top, right - left)


# --- Keras: augmentation during fit ------------------------------------------------------------


class AugmentedBatches(keras.utils.PyDataset):
    """Mini-batches for ``Model.fit`` with a fresh random augmentation every epoch.

    Each epoch the training set is shuffled; each batch is then passed through
    ``transform(images, rng)`` (e.g. :func:`random_shift`) and, if
    ``mixup_alpha`` is set, through :func:`mixup_batch`.  Labels are given as
    integer class ids and returned one-hot (float32), ready for
    ``CategoricalCrossentropy``.

    Reproducible and order-independent: batch ``i`` of epoch ``e`` uses the
    generator ``np.random.default_rng([seed, e, i])`` and the shuffle of epoch
    ``e`` uses ``np.random.default_rng([seed, e])``, so the batches do not
    depend on the order in which Keras asks for them (it fetches a few ahead
    of time).  The epoch counter advances in :meth:`on_epoch_end`.

    Args:
        x: inputs ``(N, ...)``.
        y: integer class ids ``(N,)``.
        batch_size: examples per batch (the last batch may be smaller).
        n_classes: number of classes for the one-hot labels.
        transform: optional function ``(x_batch, rng) -> x_batch``.
        mixup_alpha: ``α`` of :func:`mixup_batch`, or ``None`` for no mixup.
        seed: seed of the shuffles and of every random transformation.
        shuffle: reshuffle the examples every epoch.

    Example:
        >>> batches = AugmentedBatches(x, y, 64, n_classes=10, mixup_alpha=0.2)  # doctest: +SKIP
        >>> model.fit(batches, epochs=10)                                          # doctest: +SKIP
    """

    def __init__(self, x, y, batch_size: int = 64, *, n_classes: int,
                 transform: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
                 mixup_alpha: float | None = None, seed: int = 0, shuffle: bool = True):
        super().__init__(workers=1, use_multiprocessing=False)
        self.x = np.asarray(x, dtype=np.float32)
        self.y = one_hot(y, n_classes)
        if len(self.x) != len(self.y):
            raise ValueError(f"x and y must have the same length, got {len(self.x)} and {len(self.y)}")
        if len(self.x) == 0:
            raise ValueError("x must hold at least one example")
        self.batch_size = _validate.integer_at_least("batch_size", batch_size, 1)
        self.transform = transform
        self.mixup_alpha = None if mixup_alpha is None else _validate.positive("mixup_alpha", mixup_alpha)
        self.seed = _validate.integer_at_least("seed", seed, 0)
        self.shuffle = shuffle
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def _order(self) -> np.ndarray:
        if getattr(self, "_order_epoch", None) != self.epoch:
            n = len(self.x)
            self._order_cache = (np.random.default_rng([self.seed, self.epoch]).permutation(n)
                                 if self.shuffle else np.arange(n))
            self._order_epoch = self.epoch
        return self._order_cache

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range [0, {len(self)})")
        rows = self._order()[index * self.batch_size:(index + 1) * self.batch_size]
        x, y = self.x[rows], self.y[rows]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.transform is not None:
            x = np.asarray(self.transform(x, rng), dtype=np.float32)
        if self.mixup_alpha is not None:
            x, y, _, _ = mixup_batch(x, y, self.mixup_alpha, rng)
        return x.astype(np.float32, copy=False), y.astype(np.float32, copy=False)

    def on_epoch_end(self):
        self.epoch += 1


class TestSetMonitor(keras.callbacks.Callback):
    """Adds the test accuracy and test cross-entropy to the logs after every epoch.

    Cheaper than ``validation_data`` for a small test set (one forward pass,
    no data pipeline), and the cross-entropy is the plain one, without the
    label smoothing of the training loss, so runs with different losses can
    be compared.  Keys: ``val_accuracy`` and ``val_loss``.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, x, labels):
        super().__init__()
        self.x = np.asarray(x, dtype=np.float32)
        self.labels = np.asarray(labels)

    def on_epoch_end(self, epoch, logs=None):
        probs = keras.ops.convert_to_numpy(self.model(self.x, training=False)).astype(np.float64)
        if logs is not None:
            logs["val_accuracy"] = metrics.accuracy(probs, self.labels)
            logs["val_loss"] = metrics.negative_log_likelihood(probs, self.labels)


def fit_augmented(
    build_model: Callable[[], keras.Model],
    data: Split,
    learning_rate: float = 1e-2,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    optimizer: str = "adam",
    momentum: float = 0.9,
    seed: int = 0,
    transform: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
    mixup_alpha: float | None = None,
    label_smoothing: float = 0.0,
    test_every_epoch: bool = False,
) -> RunResult:
    """Like :func:`nnh.training.fit`, with augmentation, mixup and label smoothing.

    The loss is ``keras.losses.CategoricalCrossentropy(label_smoothing=...)``
    on one-hot labels.  Without ``transform`` and ``mixup_alpha`` the arrays are
    fed as :func:`nnh.training.batches` (reshuffled every epoch); otherwise an
    :class:`AugmentedBatches` feeds them.  The test set is never augmented.

    Args:
        build_model: function returning a fresh, uncompiled softmax classifier.
        data: the train/test split (integer labels).
        learning_rate: a float or a learning-rate schedule.
        epochs, batch_size: as in ``Model.fit``.
        optimizer: ``"adam"`` or ``"sgd"`` (with ``momentum``).
        seed: seeds the weights, the shuffles and every random augmentation.
        transform: optional ``(x_batch, rng) -> x_batch`` applied to each batch.
        mixup_alpha: ``α`` of mixup, or ``None``.
        label_smoothing: ``ε`` in [0, 1] of the loss (``y (1−ε) + ε/K``).
        test_every_epoch: record ``val_accuracy`` and ``val_loss`` (plain
            cross-entropy, no smoothing) on the test set after every epoch
            (:class:`TestSetMonitor`).

    Returns:
        :class:`nnh.training.RunResult` (``rates``: the rate of every batch).
    """
    from nnh._tf import set_seed

    label_smoothing = _validate.unit_interval("label_smoothing", label_smoothing)
    n_classes = int(max(data.y_train.max(), data.y_test.max())) + 1
    set_seed(seed)
    model = build_model()
    n_classes = max(n_classes, int(model.output_shape[-1]))
    model.compile(
        optimizer=make_optimizer(optimizer, learning_rate, momentum),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    if transform is None and mixup_alpha is None:
        inputs = {"x": batches(data.x_train, one_hot(data.y_train, n_classes), batch_size, seed=seed),
                  "shuffle": False}  # the Dataset reshuffles itself
    else:
        inputs = {"x": AugmentedBatches(data.x_train, data.y_train, batch_size, n_classes=n_classes,
                                        transform=transform, mixup_alpha=mixup_alpha, seed=seed)}
    return train_and_evaluate(
        model,
        inputs,
        (data.x_test, one_hot(data.y_test, n_classes)),
        epochs=epochs,
        callbacks=[TestSetMonitor(data.x_test, data.y_test)] if test_every_epoch else [],
        test_every_epoch=test_every_epoch,
    )
