"""``import nnh``: light, quiet, and every module reachable from it."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys

import pytest

import nnh
from nnh.grade.zygote import NNH_MODULES


def _python(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter without the quiet TensorFlow variables set."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_import_nnh_loads_no_tensorflow_and_keras_after_it_is_silent():
    result = _python(
        "import os, sys, nnh\n"
        "print('tensorflow' in sys.modules, os.environ['TF_CPP_MIN_LOG_LEVEL'], os.environ['TF_ENABLE_ONEDNN_OPTS'])\n"
        "import keras, numpy as np\n"
        "keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])(np.ones((1, 2)))\n"
        "print('tensorflow' in sys.modules)\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "3", "0", "True"]
    assert result.stderr == ""  # no absl, CUDA or oneDNN lines


def test_without_nnh_first_tensorflow_is_not_silent():
    """The check above can fail: the same import without nnh writes TensorFlow's log lines."""
    result = _python("import keras")
    assert result.returncode == 0 and result.stderr.strip()


def test_keras_after_nnh_loads_without_jax_which_still_imports_afterwards():
    """TensorFlow's and Keras's first imports skip JAX (0.4-0.8 s), on the TensorFlow backend only."""
    result = _python(
        "import sys, nnh, keras, tensorflow as tf\n"
        "from tensorflow.lite.python import util\n"
        "print('jax' in sys.modules, util._jit is None)\n"
        "import jax.numpy as jnp, optax\n"
        "print(float(jnp.ones(3).sum()), optax.constant_schedule(0.5)(3))\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "3.0", "0.5"]
    # Keras on JAX is left alone: it imports JAX as its backend
    env_jax = _python("import os; os.environ['KERAS_BACKEND'] = 'jax'\n"
                      "import sys, nnh, keras\nprint(keras.backend.backend(), 'jax' in sys.modules)")
    assert env_jax.returncode == 0, env_jax.stderr
    assert env_jax.stdout.split() == ["jax", "True"]


def test_nbformat_does_not_build_the_rfc3987_parsers():
    """``make install`` removes rfc3987-syntax (see the Makefile): with it, every process that
    imports nbformat (each nbgrader command, grading server, nbval run) spent 2.5 s building
    Lark parsers at import, for a JSON-schema format check nothing here uses."""
    result = _python("import sys, nbformat, jsonschema\nprint('rfc3987_syntax' in sys.modules, 'lark' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_the_grader_does_not_import_tensorflow():
    result = _python(
        "import sys\n"
        "import pkgutil, importlib\n"
        "from nnh import cli, grade, grading\n"
        "for m in pkgutil.iter_modules(grade.__path__):\n"
        "    if m.name != 'process':\n"
        "        importlib.import_module('nnh.grade.' + m.name)\n"
        "try:\n"
        "    cli.main(['grade', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["False", "False"]


def test_every_module_is_reachable_from_nnh_and_warmed_for_kernels():
    modules = {m.name for m in pkgutil.iter_modules(nnh.__path__) if not m.name.startswith("_")}
    tools = {"cli", "colab", "grade"}  # command-line tools, not imported by notebooks
    assert set(NNH_MODULES) == {f"nnh.{m}" for m in modules - tools}
    assert set(nnh._MODULES) == modules - tools  # the lazy list and the zygote's list are the same
    for name in nnh.__all__:
        assert getattr(nnh, name) is not None and name in dir(nnh)
    assert nnh.training.fit is nnh.training.fit and nnh.set_seed is nnh._tf.set_seed
    with pytest.raises(AttributeError, match="no attribute 'trainer'"):
        nnh.trainer  # noqa: B018


def test_the_grader_is_a_package_of_short_functions():
    """nnh/grade/ can be audited: no function longer than 80 lines, no class defined
    inside a function (the page Grading a class promises both)."""
    import ast
    import pathlib

    from nnh import grade

    long, nested = [], []
    for path in sorted(pathlib.Path(grade.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.end_lineno - node.lineno + 1 > 80:
                    long.append(f"{path.name}:{node.name}")
                nested += [f"{path.name}:{node.name}.{c.name}" for c in ast.walk(node) if isinstance(c, ast.ClassDef)]
    assert len(list(pathlib.Path(grade.__file__).parent.glob("*.py"))) >= 10
    assert long == [] and nested == []
