"""nnh — the shared library of the *Neural Network Hacks* course book.

Importing :mod:`nnh` configures TensorFlow to stay quiet (see :mod:`nnh._tf`)
and imports it; chapters, exercises and tests all start with ``import nnh``.
"""

from nnh._tf import configure_tensorflow as _configure_tensorflow

_configure_tensorflow()

from nnh import (  # noqa: E402
    ablation,
    augment,
    data,
    dropout,
    experiments,
    metrics,
    models,
    plots,
    regularization,
    schedules,
    training,
)
from nnh._tf import set_seed  # noqa: E402
from nnh.plots import plot_cosine_lr  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ablation",
    "augment",
    "data",
    "dropout",
    "experiments",
    "metrics",
    "models",
    "plots",
    "regularization",
    "schedules",
    "training",
    "set_seed",
    "plot_cosine_lr",
]
