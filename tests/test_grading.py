"""Grade a class of real submissions of every assignment with the real nbgrader.

The submissions of assignment ``a`` are in ``submissions_<a>.py``: the
reference, correct answers in another style, and wrong answers that each make
one plausible mistake.  Each assignment's class is split into course roots
graded by one run each, on the xdist worker of its group:

* the reference and the blank release exactly as an instructor grades them with
  nbgrader alone: plain ``nbgrader autograde`` and fresh kernels (hidden tests
  in the student's kernel);
* the other correct answers and the wrong ones by one ``nnh grade --jobs 2`` run
  (nbgrader's ``Autograde`` in its sandbox, with warm kernels, every test cell
  decided by the judge, and the references of the answers withheld in the box):
  each correct answer keeps full marks and each wrong one loses its points there.

Wrong answers are graded in packs (:func:`nbgrading.pack_wrong_answers`): one
submission holds several mistakes in different answer cells, only where no
mistake's test cells can run another's changed code, so each still loses points
for its own mistake alone — a third as many notebooks to grade.
"""

from __future__ import annotations

import functools
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import nbgrading

ASSIGNMENTS = sorted(p.parent.name for p in (nbgrading.REPO / "solutions").glob("*/*.ipynb"))
N_WRONG_BATCHES = 1


def submissions(assignment: str):
    return importlib.import_module(f"submissions_{assignment}")


FRESH = ("blank", "reference")  # graded on fresh kernels, as an instructor would


@functools.lru_cache(maxsize=None)
def packs(assignment: str) -> dict[str, list[str]]:
    """Submitted student id → the wrong answers it holds."""
    module = submissions(assignment)
    wrong = {sid: module.WRONG[sid] for sid in sorted(module.WRONG)}
    return {f"pack{i:02d}": members
            for i, members in enumerate(nbgrading.pack_wrong_answers(assignment, module.REFERENCE, wrong))}


def students(assignment: str) -> dict[str, dict[str, str]]:
    """Submitted student id → its answer cells: blank, the correct answers and the packs."""
    module = submissions(assignment)
    return {"blank": {}, **module.CORRECT,
            **{pack: nbgrading.packed_answers(module.REFERENCE, [module.WRONG[sid][0] for sid in members])
               for pack, members in packs(assignment).items()}}


def submitted_as(assignment: str, student: str) -> str:
    """The submitted id that holds ``student`` (a wrong answer is in a pack)."""
    return next((pack for pack, members in packs(assignment).items() if student in members), student)


def batches(assignment: str) -> list[list[str]]:
    """The submitted ids of each course root: blank and reference first (plain nbgrader)."""
    module = submissions(assignment)
    warm = sorted(set(module.CORRECT) - set(FRESH)) + sorted(packs(assignment))
    return [list(FRESH)] + [warm[i::N_WRONG_BATCHES] for i in range(N_WRONG_BATCHES)]


def batch_of(assignment: str, student: str) -> int:
    student = submitted_as(assignment, student)
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
            done = subprocess.run([str(Path(sys.executable).parent / "nnh"), "grade", assignment, "--jobs", "2",
                                   "--no-preflight"], cwd=course, env=nbgrading.env(), capture_output=True, text=True,
                                  timeout=1800)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        _graded[assignment, batch] = nbgrading.scores(course, assignment)
    return _graded[assignment, batch]


def student_scores(assignment: str, student: str, tmp_path_factory) -> dict:
    scores = graded(assignment, batch_of(assignment, student), tmp_path_factory)
    submitted = submitted_as(assignment, student)
    assert submitted in scores, f"{submitted} was not graded"
    return scores[submitted]


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


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_packed_wrong_answers_cannot_reach_each_other(assignment):
    """Every wrong answer is in exactly one pack; in a pack the members change disjoint answer
    cells, and no member's must-fail test cells can run code another member changed."""
    module = submissions(assignment)
    reference = module.REFERENCE
    grouped = packs(assignment)
    assert sorted(sid for members in grouped.values() for sid in members) == sorted(module.WRONG)
    assert len(grouped) < len(module.WRONG)  # packing saves notebooks
    deps = nbgrading.test_cell_dependencies(assignment, [reference] + [a for a, _ in module.WRONG.values()])
    for members in grouped.values():
        for sid in members:
            answers, must_fail = module.WRONG[sid]
            reach = set().union(*(deps[cell] for cell in must_fail))
            assert reach, f"{sid}: its test cells name no answer"
            for other in members:
                if other != sid:
                    changed = {k for k, v in module.WRONG[other][0].items() if v != reference.get(k)}
                    assert not changed & reach, f"{other} changes {changed & reach}, which {sid}'s tests run"
                    assert not changed & {k for k, v in answers.items() if v != reference.get(k)}


def test_packing_keeps_apart_a_mistake_and_the_tests_that_run_its_code():
    """dropout: inverted_dropout calls dropout_mask, so a wrong dropout_mask is never packed
    with a mistake that test_inverted_dropout_training must catch (and vice versa)."""
    module = submissions("dropout")
    reference = module.REFERENCE
    bad_mask = nbgrading.mutate(reference, "dropout_mask", "rng", "np.random.default_rng(0)") \
        if "rng" in reference["dropout_mask"] else None
    assert bad_mask is not None
    wrong = {"bad_mask": (bad_mask, ["test_dropout_mask_random"]),
             "no_scaling": module.WRONG["no_scaling"],
             "bad_count": module.WRONG["squared_subnetworks"]}
    grouped = nbgrading.pack_wrong_answers("dropout", reference, wrong)
    assert ["bad_mask", "bad_count"] in grouped and ["no_scaling"] in grouped
    assert nbgrading.packed_answers(reference, [bad_mask, wrong["bad_count"][0]]) == \
        {**reference, "dropout_mask": bad_mask["dropout_mask"],
         "count_subnetworks": wrong["bad_count"][0]["count_subnetworks"]}


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
        assert scores[cell][0] < scores[cell][1], \
            f"{student} (in {submitted_as(assignment, student)}) should lose points in {cell}: {scores[cell]}"
