"""Every runnable example in the docstrings of ``nnh`` works as printed."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import keras
import numpy as np
import pytest

import nnh

MODULES = sorted(info.name for info in pkgutil.iter_modules(nnh.__path__, "nnh."))
# the reference modules show a runnable example for each public function
MIN_EXAMPLES = {"nnh.schedules": 4, "nnh.regularization": 7, "nnh.dropout": 10, "nnh.augment": 5,
                "nnh.metrics": 2}


def test_every_module_is_checked():
    assert set(MIN_EXAMPLES) <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, extraglobs={"np": np, "keras": keras},
                             optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted >= MIN_EXAMPLES.get(name, 0), f"{name} has too few examples"
