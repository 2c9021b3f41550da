"""Small Keras models used across chapters (each builds in well under a second)."""

from __future__ import annotations

import keras

from nnh import _validate


def mlp(
    input_dim: int = 64,
    hidden: tuple[int, ...] = (64,),
    n_classes: int = 10,
    *,
    kernel_regularizer=None,
    dropout: float = 0.0,
    batch_norm: bool = False,
    batch_norm_momentum: float = 0.99,
) -> keras.Model:
    """A ReLU multi-layer perceptron with a softmax output.

    Args:
        input_dim: number of input features.
        hidden: width of each hidden layer.
        n_classes: number of output classes.
        kernel_regularizer: a Keras regularizer (e.g. ``keras.regularizers.L2(1e-4)``)
            applied to the kernel of every ``Dense`` layer, output layer included.
        dropout: drop rate of a ``keras.layers.Dropout`` after each hidden layer
            (0 = no dropout layer).
        batch_norm: put a ``BatchNormalization`` between each hidden ``Dense``
            layer and its ReLU.
        batch_norm_momentum: the ``momentum`` of those layers, in [0, 1): their
            moving statistics are updated as ``moving = momentum * moving +
            (1 - momentum) * batch_statistic`` (Keras' default 0.99).

    Example:
        >>> mlp(hidden=(32,), dropout=0.5).count_params()
        2410
    """
    _validate.in_half_open_unit("dropout", dropout, low_open=False)
    _validate.in_half_open_unit("batch_norm_momentum", batch_norm_momentum, low_open=False)
    layers = [keras.Input((input_dim,))]
    for width in hidden:
        if batch_norm:
            layers += [
                keras.layers.Dense(width, kernel_regularizer=kernel_regularizer),
                keras.layers.BatchNormalization(momentum=batch_norm_momentum),
                keras.layers.Activation("relu"),
            ]
        else:
            layers.append(
                keras.layers.Dense(width, activation="relu", kernel_regularizer=kernel_regularizer)
            )
        if dropout:
            layers.append(keras.layers.Dropout(dropout))
    layers.append(
        keras.layers.Dense(n_classes, activation="softmax", kernel_regularizer=kernel_regularizer)
    )
    return keras.Sequential(layers, name="mlp")


def cnn(
    input_shape: tuple[int, int, int] = (8, 8, 1),
    n_classes: int = 10,
    *,
    filters: tuple[int, ...] = (16, 32),
    dense: int = 64,
    dropout: float = 0.0,
    kernel_regularizer=None,
) -> keras.Model:
    """A small convolutional classifier: ``Conv(3×3, same) → ReLU → MaxPool(2)`` per
    entry of ``filters``, then a ReLU dense layer and a softmax output.

    Args:
        input_shape: ``(height, width, channels)`` of one image.
        n_classes: number of output classes.
        filters: number of filters of each convolution block.
        dense: width of the hidden dense layer.
        dropout: drop rate before the output layer (0 = none).
        kernel_regularizer: Keras regularizer for every kernel.
    """
    _validate.in_half_open_unit("dropout", dropout, low_open=False)
    layers = [keras.Input(input_shape)]
    for n in filters:
        layers += [
            keras.layers.Conv2D(n, 3, padding="same", activation="relu",
                                kernel_regularizer=kernel_regularizer),
            keras.layers.MaxPooling2D(2),
        ]
    layers += [keras.layers.Flatten(),
               keras.layers.Dense(dense, activation="relu", kernel_regularizer=kernel_regularizer)]
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(n_classes, activation="softmax",
                                     kernel_regularizer=kernel_regularizer))
    return keras.Sequential(layers, name="cnn")
