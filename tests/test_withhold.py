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


def test_the_helpers_a_reference_is_made_of_are_withheld_too():
    """An answer must not call the private helpers of the reference either (a formula, a
    validator, the update step): each top-level definition a withheld one uses, directly or
    through another, is withheld with it, but for what the module needs when it is imported
    (a function it calls then, a base class of a definition it keeps)."""
    text = ("def _formula(x):\n    return 2 * x\n\n\ndef _check(x):\n    return float(_positive(x))\n\n\n"
            "def _positive(x):\n    return abs(x)\n\n\nclass _Base:\n    def get_config(self):\n        return {}\n\n\n"
            "def _table():\n    return {'a': 1}\n\n\nTABLE = _table()\n\n\n"
            "def answer(x):\n    return _formula(_check(x)) + TABLE['a']\n\n\n"
            "class Answer(_Base):\n    pass\n\n\nclass Kept(_Base):\n    f = staticmethod(_formula)\n\n\n"
            "def unrelated():\n    return 3\n")
    withheld, replaced = withhold_source(text, "nnh.fake", {"answer", "Answer"})
    assert replaced == ["Answer", "_check", "_formula", "_positive", "answer"]
    namespace = {}
    exec(compile(withheld, "<withheld>", "exec"), namespace)  # noqa: S102 - the test's own text
    assert namespace["TABLE"] == {"a": 1} and namespace["unrelated"]() == 3 and namespace["Kept"]().get_config() == {}
    for name in ("_formula", "_check", "_positive"):
        with pytest.raises(NotImplementedError, match=f"nnh.fake.{name} is the course's reference"):
            namespace[name](1)
    schedules, _ = withhold_source((REPO / "nnh" / "schedules.py").read_text(), "nnh.schedules",
                                   set(graded_names(_files(REPO / "solutions" / "schedules"))))
    namespace = {}
    exec(compile(schedules, "<withheld schedules>", "exec"), namespace)  # noqa: S102 - the course's module
    for name in ("_warmup_cosine", "_evaluate", "_check_warmup_cosine"):
        with pytest.raises(NotImplementedError, match="withheld while notebooks are graded"):
            namespace[name](1, 2, 3)


def test_the_copy_keeps_the_rest_of_nnh_and_the_grader(tmp_path):
    names = graded_names(_files(REPO / "solutions" / "regularization"))
    copy = tmp_path / "nnh"
    withheld = make_copy(package_folder(), str(copy), names)
    assert set(withheld) >= {f"nnh.regularization.{name}" for name in names}
    # and what those references are made of: what an answer could call instead (the red team's way)
    assert {"nnh.regularization._adam_step", "nnh.regularization._sum_squares"} <= set(withheld)
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
