"""nbval on every chapter and every reference solution, and the release in sync.

Each notebook runs in its own ``pytest --nbval`` process (a notebook's cells
share one kernel, so they cannot be split across xdist workers); the stored
outputs must match the fresh ones, except in cells marked NBVAL_IGNORE_OUTPUT
with a reason.  Images are never compared.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import nbgrading

REPO = nbgrading.REPO
CHAPTERS = sorted((REPO / "book").glob("*.ipynb"))
SOLUTIONS = sorted((REPO / "solutions").glob("*/*.ipynb"))
ASSIGNMENTS = sorted(p.parent.name for p in SOLUTIONS)


def test_there_is_something_to_check():
    assert CHAPTERS and SOLUTIONS and ASSIGNMENTS


@pytest.mark.parametrize("notebook", CHAPTERS + SOLUTIONS, ids=lambda p: str(p.relative_to(REPO)))
def test_nbval(notebook):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", "-p", "no:xdist", "-p", "no:cacheprovider",
         "-q", str(notebook.relative_to(REPO))],
        cwd=REPO, env=nbgrading.env(), capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_in_sync_with_source(assignment, tmp_path):
    """exercises/<a>/<a>.ipynb is exactly what nbgrader generates from solutions/<a>."""
    course = nbgrading.make_course(tmp_path, assignment)
    fresh = json.loads(nbgrading.notebook_path(course, nbgrading.RELEASE, assignment).read_text())
    committed = json.loads(nbgrading.notebook_path(REPO, nbgrading.RELEASE, assignment).read_text())
    assert fresh == committed, f"exercises/{assignment} is stale: run `make exercises` and commit"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_has_no_solutions_or_hidden_tests(assignment):
    text = nbgrading.notebook_path(REPO, nbgrading.RELEASE, assignment).read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "nnh.grading"):
        assert marker not in text
    nb = json.loads(text)
    assert all(not cell.get("outputs") for cell in nb["cells"] if cell["cell_type"] == "code")


@pytest.mark.parametrize("notebook", CHAPTERS + SOLUTIONS, ids=lambda p: str(p.relative_to(REPO)))
def test_nbval_markers_are_recognised(notebook):
    """nbval reads a marker only when the comment is the marker alone
    (``# NBVAL_IGNORE_OUTPUT: why`` is silently ignored): the reason goes on the next line."""
    from nbval.plugin import comment_markers

    nb = json.loads(notebook.read_text())
    for index, cell in enumerate(nb["cells"]):
        for line in "".join(cell["source"]).splitlines():
            comment = line.strip().lstrip("#").strip()
            if line.strip().startswith("#") and comment.startswith("NBVAL"):
                assert comment in comment_markers, f"cell {index}: {line.strip()!r} is not an nbval marker"


#: The parts of each assignment that make the student build an idea of the chapter
#: (issue 15): their test cells are named ``test_<function>_...``.
NEW_PARTS = {
    "schedules": ["plateau_schedule"],
    "regularization": ["adamw_update", "adam_l2_update", "early_stopping"],
    "dropout": ["mc_dropout_predict", "predictive_entropy"],
    "augmentation": ["fit_temperature", "cutmix_batch"],
}


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_points_reward_ideas_more_than_error_paths(assignment):
    """Error-path cells (``..._errors``) are worth at most 10 % of the points; the parts
    that build an idea (:data:`NEW_PARTS`) at least 30 %, each with its own tests."""
    points = nbgrading.test_points(assignment)
    total = sum(points.values())
    errors = sum(p for g, p in points.items() if g.endswith("_errors"))
    assert errors <= 0.10 * total, f"{assignment}: error paths are {errors} of {total} points"
    parts = NEW_PARTS[assignment]
    new = {name: sum(p for g, p in points.items() if g.startswith(f"test_{name}_")) for name in parts}
    assert all(new.values()), f"{assignment}: a part without graded tests: {new}"
    assert sum(new.values()) >= 0.30 * total, f"{assignment}: the new parts are {new} of {total} points"


SKIPPED_UNDER_NBGRADER = 'if os.environ.get("NBGRADER_EXECUTION"):'


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_try_it_cells_do_not_run_while_nbgrader_grades(assignment):
    """The ungraded "Try it" demonstrations (training, plots) are skipped when nbgrader
    runs the notebook (it sets ``NBGRADER_EXECUTION``; nbgrader's FAQ): they cost most
    of a graded notebook's run time and earn no points.  Every code cell from the first
    "Try it" cell on is guarded, and no graded or answer cell comes after it."""
    nb = json.loads(nbgrading.notebook_path(REPO, nbgrading.RELEASE, assignment).read_text())
    ids = [cell["metadata"].get("nbgrader", {}).get("grade_id", "") for cell in nb["cells"]]
    first = next(i for i, grade_id in enumerate(ids) if grade_id.startswith("try_it"))
    for cell, grade_id in zip(nb["cells"][first:], ids[first:], strict=True):
        info = cell["metadata"].get("nbgrader", {})
        assert not (info.get("grade") or info.get("solution")), f"{assignment}: {grade_id} is graded after Try it"
        if cell["cell_type"] == "code":
            code = [line for line in "".join(cell["source"]).splitlines() if not line.startswith("#")]
            assert code[0] == SKIPPED_UNDER_NBGRADER + "  # nbgrader is grading or validating the notebook", \
                f"{assignment}: {grade_id} runs while nbgrader grades"
            assert all(line.startswith("    ") or not line.strip() for line in code[3:]), grade_id
    assert "import os" in "".join(nb["cells"][ids.index("imports")]["source"])
