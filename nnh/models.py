"""Small Keras models used across chapters (each builds in well under a second)."""

from __future__ import annotations

import keras


def mlp(input_dim: int = 64, hidden: tuple[int, ...] = (64,), n_classes: int = 10) -> keras.Model:
    """A ReLU multi-layer perceptron with a softmax output.

    Args:
        input_dim: number of input features.
        hidden: width of each hidden layer.
        n_classes: number of output classes.
    """
    layers = [keras.Input((input_dim,))]
    layers += [keras.layers.Dense(width, activation="relu") for width in hidden]
    layers.append(keras.layers.Dense(n_classes, activation="softmax"))
    return keras.Sequential(layers, name="mlp")
