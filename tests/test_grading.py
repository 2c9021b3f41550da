"""Grade a class of real submissions of every assignment with the real nbgrader.

The submissions of assignment ``a`` are in ``submissions_<a>.py``: the
reference, correct answers in another style, and wrong answers that each make
one plausible mistake.  Each assignment's class is split into course roots
graded by one ``nbgrader autograde`` run each, on the xdist worker of its group:

* the honest students (the correct answers and the blank release) exactly as an
  instructor grades them: plain ``nbgrader autograde`` and fresh kernels;
* the wrong answers, in two halves, by the same ``nbgrader autograde`` with
  kernels forked from a warm zygote (what ``nnh grade`` does, see
  ``tests/test_zygote.py``), which saves the TensorFlow import of each kernel.
"""

from __future__ import annotations

import importlib

import pytest

import nbgrading

ASSIGNMENTS = sorted(p.parent.name for p in (nbgrading.REPO / "solutions").glob("*/*.ipynb"))
N_WRONG_BATCHES = 2


def submissions(assignment: str):
    return importlib.import_module(f"submissions_{assignment}")


def students(assignment: str) -> dict[str, dict[str, str]]:
    module = submissions(assignment)
    return {"blank": {}, **module.CORRECT, **{sid: answers for sid, (answers, _) in module.WRONG.items()}}


def batches(assignment: str) -> list[list[str]]:
    """The honest students first (graded on fresh kernels), then the wrong ones."""
    module = submissions(assignment)
    wrong = sorted(module.WRONG)
    return [["blank", *sorted(module.CORRECT)]] + [wrong[i::N_WRONG_BATCHES] for i in range(N_WRONG_BATCHES)]


def batch_of(assignment: str, student: str) -> int:
    return next(i for i, names in enumerate(batches(assignment)) if student in names)


_graded: dict[tuple[str, int], dict] = {}


def graded(assignment: str, batch: int, tmp_path_factory) -> dict:
    """Scores of one batch: its own course root, generated, submitted, autograded."""
    if (assignment, batch) not in _graded:
        course = nbgrading.make_course(tmp_path_factory.mktemp(f"{assignment}{batch}"), assignment)
        answers = students(assignment)
        for student in batches(assignment)[batch]:
            nbgrading.submit(course, assignment, student, answers[student])
        if batch == 0:
            nbgrading.nbgrader(course, "autograde", assignment, "--force")
        else:
            with nbgrading.warm_kernels(course) as environment:
                nbgrading.nbgrader(course, "autograde", assignment, "--force", environment=environment)
        _graded[assignment, batch] = nbgrading.scores(course, assignment)
    return _graded[assignment, batch]


def student_scores(assignment: str, student: str, tmp_path_factory) -> dict:
    scores = graded(assignment, batch_of(assignment, student), tmp_path_factory)
    assert student in scores, f"{student} was not graded"
    return scores[student]


def _params(kind: str):
    params = []
    for assignment in ASSIGNMENTS:
        module = submissions(assignment)
        names = {"correct": sorted(module.CORRECT), "blank": ["blank"], "wrong": sorted(module.WRONG)}[kind]
        for student in names:
            group = f"grading-{assignment}-{batch_of(assignment, student)}"
            params.append(pytest.param(assignment, student, id=f"{assignment}-{student}",
                                       marks=pytest.mark.xdist_group(group)))
    return params


pytestmark = pytest.mark.grading


def expected_max(assignment: str) -> float:
    return sum(nbgrading.test_points(assignment).values())


def test_every_assignment_has_a_class():
    assert ASSIGNMENTS
    for assignment in ASSIGNMENTS:
        module = submissions(assignment)
        assert {"reference", "other_style"} <= set(module.CORRECT)
        assert len(module.WRONG) >= 5, f"{assignment}: at least five wrong variants"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_new_part_has_wrong_and_correct_answers(assignment):
    """Issue 15: each function of a new part has at least four wrong answers that must lose
    points in its tests, and at least two correct answers (other than the reference) that
    rewrite it."""
    from test_notebooks import NEW_PARTS

    module = submissions(assignment)
    reference = module.REFERENCE
    for name in NEW_PARTS[assignment]:
        wrong = [sid for sid, (_, cells) in module.WRONG.items() if any(c.startswith(f"test_{name}_") for c in cells)]
        assert len(wrong) >= 4, f"{assignment}.{name}: only {wrong} lose points in its tests"
        styles = {answers[name] for sid, answers in module.CORRECT.items()
                  if sid != "reference" and answers.get(name, reference[name]) != reference[name]}
        assert len(styles) >= 2, f"{assignment}.{name}: {len(styles)} correct answers in other styles"


@pytest.mark.parametrize(("assignment", "student"), _params("correct"))
def test_correct_answers_get_full_marks(assignment, student, tmp_path_factory):
    scores = student_scores(assignment, student, tmp_path_factory)
    score, maximum = scores["total"]
    lost = {k: v for k, v in scores.items() if v[0] < v[1]}
    assert maximum == expected_max(assignment) > 0
    assert score == maximum, f"{student} lost points in {lost}"


@pytest.mark.parametrize(("assignment", "student"), _params("blank"))
def test_blank_release_scores_zero(assignment, student, tmp_path_factory):
    scores = student_scores(assignment, student, tmp_path_factory)
    assert scores["total"] == (0.0, expected_max(assignment))


@pytest.mark.parametrize(("assignment", "student"), _params("wrong"))
def test_wrong_answer_loses_points(assignment, student, tmp_path_factory):
    scores = student_scores(assignment, student, tmp_path_factory)
    score, maximum = scores["total"]
    assert score < maximum
    _, must_fail = submissions(assignment).WRONG[student]
    for cell in must_fail:
        assert scores[cell][0] < scores[cell][1], f"{student} should lose points in {cell}: {scores[cell]}"
