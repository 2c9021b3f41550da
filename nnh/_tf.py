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

The first imports of TensorFlow and Keras also run without JAX (when Keras runs
on TensorFlow, as here).  Both import JAX if it is installed, and neither uses it
with this backend: ``tf.lite`` for ``TFLiteConverter.experimental_from_jax``
(``tensorflow/lite/python/util.py``), Keras to patch ``jax.monitoring`` for its
Orbax callback (``keras/src/callbacks/orbax_checkpoint.py``).  With JAX installed
(the test extra pulls it in, for the ``optax`` comparisons) that costs 0.4 to 0.8 s
of the 4 to 5 s ``import keras`` takes here, in every kernel, test process and
grader.  So during those two imports ``import jax`` fails as if JAX were absent,
unless JAX is already loaded; afterwards JAX imports normally.  What is lost is
that converter (it then raises "Cannot import jit from jax") and the patch, which
only JAX versions older than the pinned one need.

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


_FIRST_IMPORTS = ("tensorflow", "keras")


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` and ``keras`` like the normal path finder, but executes them
    without JAX, and TensorFlow with fd 2 silenced, keeping only its error log records.
    It removes itself from ``sys.meta_path`` once both are loaded."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in _FIRST_IMPORTS:
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

    def __getattr__(self, name):  # the rest (resource readers, get_source, ...) is the real loader's
        return getattr(self._loader, name)

    def exec_module(self, module):
        with contextlib.ExitStack() as stack:
            if os.environ.get("KERAS_BACKEND") == "tensorflow":  # not Keras on JAX
                stack.enter_context(_without("jax"))
            if module.__name__ == "tensorflow":
                stack.enter_context(_stderr_fd_silenced())
            self._loader.exec_module(module)
        if module.__name__ == "tensorflow":
            _log_errors_only(module)
        if all(name in sys.modules for name in _FIRST_IMPORTS):
            _remove_finder()


@contextlib.contextmanager
def _without(package: str):
    """``import package`` raises ImportError in the block, unless it is already imported."""
    if package in sys.modules:
        yield
        return
    sys.modules[package] = None  # the import system's "not importable" mark
    try:
        yield
    finally:
        if sys.modules.get(package, ...) is None:
            del sys.modules[package]


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
