"""nnh — the shared library of the *Neural Network Hacks* course book.

Chapters, exercises and tests start with ``import nnh``.  The import is light: it
sets TensorFlow's quiet environment (see :mod:`nnh._tf`) and arranges that TensorFlow,
when something first imports it (``import keras``, or a module of ``nnh`` that trains),
loads without its log lines.  The modules below are imported on first use
(``nnh.training``, ``from nnh import schedules``), so tools that need no TensorFlow,
such as the grader (``nnh grade``), do not load it.
"""

import importlib

from nnh._tf import quiet_tensorflow_on_import as _quiet_tensorflow_on_import

_quiet_tensorflow_on_import()

__version__ = "0.1.0"

_MODULES = ("ablation", "augment", "data", "dropout", "experiments", "grading", "metrics", "models", "plots",
            "regularization", "schedules", "training")
_NAMES = {"set_seed": "nnh._tf", "plot_cosine_lr": "nnh.plots"}

__all__ = [*_MODULES, *_NAMES]


def __getattr__(name: str):
    if name in _MODULES:
        return importlib.import_module(f"nnh.{name}")  # the import sets the attribute too
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nnh' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
