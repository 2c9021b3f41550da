"""Grade a class of real submissions of ``schedules`` with the real nbgrader.

The submissions (see ``submissions_schedules.py``) are split into two course
roots so that ``pytest -n 2`` grades them in parallel; each course is graded
once, by one ``nbgrader autograde`` run, on the xdist worker of its group.
"""

from __future__ import annotations

import pytest

import nbgrading
from submissions_schedules import ASSIGNMENT, CORRECT, WRONG

STUDENTS = {"blank": {}, **CORRECT, **{sid: answers for sid, (answers, _) in WRONG.items()}}
BATCHES = [sorted(STUDENTS)[0::2], sorted(STUDENTS)[1::2]]
_graded: dict[int, dict] = {}


def graded(batch: int, tmp_path_factory) -> dict:
    """Scores of one batch: its own course root, generated, submitted, autograded."""
    if batch not in _graded:
        course = nbgrading.make_course(tmp_path_factory.mktemp(f"course{batch}"), ASSIGNMENT)
        for student in BATCHES[batch]:
            nbgrading.submit(course, ASSIGNMENT, student, STUDENTS[student])
        nbgrading.nbgrader(course, "autograde", ASSIGNMENT, "--force")
        _graded[batch] = nbgrading.scores(course, ASSIGNMENT)
    return _graded[batch]


def student_scores(student: str, tmp_path_factory) -> dict:
    batch = next(i for i, names in enumerate(BATCHES) if student in names)
    scores = graded(batch, tmp_path_factory)
    assert student in scores, f"{student} was not graded"
    return scores[student]


def _params(students):
    return [
        pytest.param(s, marks=pytest.mark.xdist_group(f"grading-{ASSIGNMENT}-{i}"))
        for s in students for i, names in enumerate(BATCHES) if s in names
    ]


pytestmark = pytest.mark.grading


def expected_max() -> float:
    import nbformat

    nb = nbformat.read(nbgrading.REPO / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    return float(sum(c.metadata["nbgrader"].get("points", 0) for c in nb.cells
                     if c.metadata.get("nbgrader", {}).get("grade")))


@pytest.mark.parametrize("student", _params(sorted(CORRECT)))
def test_correct_answers_get_full_marks(student, tmp_path_factory):
    scores = student_scores(student, tmp_path_factory)
    score, maximum = scores["total"]
    lost = {k: v for k, v in scores.items() if v[0] < v[1]}
    assert maximum == expected_max() > 0
    assert score == maximum, f"{student} lost points in {lost}"


@pytest.mark.parametrize("student", _params(["blank"]))
def test_blank_release_scores_zero(student, tmp_path_factory):
    scores = student_scores(student, tmp_path_factory)
    assert scores["total"] == (0.0, expected_max())


@pytest.mark.parametrize("student", _params(sorted(WRONG)))
def test_wrong_answer_loses_points(student, tmp_path_factory):
    scores = student_scores(student, tmp_path_factory)
    score, maximum = scores["total"]
    assert score < maximum
    _, must_fail = WRONG[student]
    for cell in must_fail:
        assert scores[cell][0] < scores[cell][1], f"{student} should lose points in {cell}: {scores[cell]}"
