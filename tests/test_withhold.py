"""Delegation made impossible (``nnh/grade/withhold.py``): the box's copy of ``nnh``
has stubs, without source, for the references of the assignment's answers.
``tests/test_grade_command.py`` grades students who delegate in disguise in that box."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from nnh.grade.course import _files
from nnh.grade.withhold import graded_names, make_copy, package_folder, withhold_source

REPO = Path(__file__).resolve().parents[1]


def test_the_graded_names_are_what_the_answer_cells_define():
    assert graded_names(_files(REPO / "solutions" / "schedules")) == [
        "WarmupCosine", "cosine_decay", "linear_warmup", "plateau_schedule", "step_decay", "warmup_cosine"]


def test_a_withheld_definition_is_a_stub_without_its_source():
    text = ("import functools\n\n\n@functools.lru_cache\ndef answer(x):\n    return 42 * x\n\n\n"
            "class Layer(object):\n    rate = 0.5\n\n\ndef helper():\n    return answer(1)\n")
    withheld, replaced = withhold_source(text, "nnh.fake", {"answer", "Layer"})
    assert replaced == ["Layer", "answer"]
    assert "42" not in withheld and "lru_cache" not in withheld and "rate = 0.5" not in withheld
    namespace = {}
    exec(compile(withheld, "<withheld>", "exec"), namespace)  # noqa: S102 - the test's own text
    for call in (lambda: namespace["answer"](1), lambda: namespace["Layer"](), namespace["helper"]):
        with pytest.raises(NotImplementedError, match="nnh.fake.(answer|Layer) is the course's reference"):
            call()


def test_the_copy_keeps_the_rest_of_nnh_and_the_grader(tmp_path):
    names = graded_names(_files(REPO / "solutions" / "regularization"))
    copy = tmp_path / "nnh"
    withheld = make_copy(package_folder(), str(copy), names)
    assert withheld == [f"nnh.regularization.{name}" for name in names]
    assert (copy / "grade" / "judge.py").read_bytes() == (Path(package_folder()) / "grade" / "judge.py").read_bytes()
    assert not list(copy.rglob("__pycache__"))
    assert all(oct(os.stat(p).st_mode & 0o777) in ("0o644", "0o755") for p in [copy, *copy.rglob("*")])
    spec = importlib.util.spec_from_file_location("withheld_regularization", copy / "regularization.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    with pytest.raises(NotImplementedError, match="withheld while notebooks are graded"):
        module.l2_penalty([1.0], 0.1)
    source = (copy / "regularization.py").read_text()
    assert "def l2_penalty(*args, **kwargs):" in source and "l2_penalty([1.0, -2.0], lam=0.1)" not in source
