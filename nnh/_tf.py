"""Quiet, deterministic TensorFlow set-up shared by every chapter, exercise and test.

TensorFlow writes C++ log lines to stderr when it is imported.  nbgrader gives
zero points to a test cell that writes stderr and nbval compares stderr, so the
noise is switched off here, once, before TensorFlow is imported:

* ``TF_CPP_MIN_LOG_LEVEL=3`` silences TensorFlow's own C++ logging;
* ``TF_ENABLE_ONEDNN_OPTS=0`` turns off oneDNN custom ops (and their notice),
  which also makes CPU results reproducible run to run;
* TensorFlow's Python logger (``tf.function`` retracing notices) is set to
  ``ERROR``;
* the GPU build of TensorFlow logs "Could not find cuda drivers" through absl
  before any setting is read, so the import itself runs with file
  descriptor 2 pointed at ``/dev/null``.  Python exceptions still propagate.

Variables the user has already set are left alone.  ``import nnh`` sets them and, with
:func:`quiet_tensorflow_on_import`, applies the rest to the first import of TensorFlow,
whoever makes it, without importing TensorFlow itself.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys

QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}


@contextlib.contextmanager
def _stderr_fd_silenced():
    """Point the process-level stderr (fd 2) at /dev/null for the block."""
    fd = 2  # the process-level descriptor (Jupyter kernels forward it to the notebook)
    sys.stderr.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    try:
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def configure_tensorflow() -> None:
    """Set the quiet environment and import TensorFlow without log noise."""
    quiet_tensorflow_on_import()
    import tensorflow  # noqa: F401  (through the quiet finder, unless it was loaded before)


def _log_errors_only(tensorflow) -> None:
    # Python-side TensorFlow warnings (e.g. "tf.function retracing") are log
    # records of the "tensorflow" logger; keep errors only.
    tensorflow.get_logger().setLevel("ERROR")


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` like the normal path finder, but executes it with fd 2 silenced
    and then keeps only its error log records.  It removes itself from
    ``sys.meta_path`` once TensorFlow is loaded."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        _remove_finder()
        with _stderr_fd_silenced():
            self._loader.exec_module(module)
        _log_errors_only(module)


def _remove_finder() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietTensorFlowFinder)]


def quiet_tensorflow_on_import() -> None:
    """Set the quiet environment now, and make the first import of TensorFlow, by whatever
    code, silent (without importing it: :func:`configure_tensorflow` does)."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if "tensorflow" in sys.modules:
        _log_errors_only(sys.modules["tensorflow"])
    elif not any(isinstance(f, _QuietTensorFlowFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowFinder())


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TensorFlow ops deterministic."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
