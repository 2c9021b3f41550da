"""Offline datasets: everything here ships inside an installed package (no downloads)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from nnh import _validate


class Split(NamedTuple):
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def digits(test_size: float = 0.25, seed: int = 0, flat: bool = True,
           n_train: int | None = None) -> Split:
    """The 1,797 8×8 handwritten digits of scikit-learn, scaled to [0, 1].

    Args:
        test_size: fraction held out for testing (stratified by class).
        seed: seed of the split.
        flat: ``True`` gives ``(N, 64)`` vectors for an MLP, ``False`` gives
            ``(N, 8, 8, 1)`` images for a CNN.
        n_train: keep only this many training examples (a stratified subset,
            the test set unchanged) — a small training set that a large
            network can memorise, for the chapters on overfitting.

    Returns:
        :class:`Split` of float32 inputs and int labels 0–9.
    """
    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)
    x = x.reshape(len(x), -1) if flat else x[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        x, bunch.target, test_size=test_size, random_state=seed, stratify=bunch.target
    )
    if n_train is not None:
        n_train = _validate.integer_at_least("n_train", n_train, 10)
        if n_train < len(x_train):
            x_train, _, y_train, _ = train_test_split(
                x_train, y_train, train_size=n_train, random_state=seed, stratify=y_train
            )
    return Split(x_train, y_train, x_test, y_test)
