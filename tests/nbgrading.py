"""Helpers to run the real nbgrader on real notebooks, in nbgrader's own test style,
and the book's table of contents shared by the book, browser and workflow tests.

A test builds a temporary course root (this repository's ``nbgrader_config.py``
and one assignment's source), runs ``nbgrader generate_assignment``, writes
submissions built from the *released* notebook (the answer cells filled in),
runs ``nbgrader autograde`` and reads the scores from the gradebook.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RELEASE = "exercises"  # nbgrader_config.py: release_directory
_MARKERS = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*(\n|\Z)", re.MULTILINE)


def toc_files() -> list[str]:
    """Every page of the book, in ``_toc.yml`` order (paths without suffix)."""
    import yaml

    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


def env() -> dict[str, str]:
    """The grading environment: the venv's tools on PATH (nbgrader needs alembic)."""
    environment = dict(os.environ)
    environment["PATH"] = f"{BIN}{os.pathsep}{environment.get('PATH', '')}"
    environment.update(TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="0")
    return environment


def nbgrader(course: Path, *args: str, timeout: float = 1800,
             environment: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` in ``course`` (in ``environment``, default :func:`env`);
    fail with its output if it fails."""
    result = subprocess.run(
        [str(BIN / "nbgrader"), *args], cwd=course, env=environment or env(), capture_output=True,
        text=True, timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"nbgrader {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def make_course(root: Path, assignment: str) -> Path:
    """A fresh course root with the assignment's source, and its release generated."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
    shutil.copytree(REPO / "solutions" / assignment, root / "solutions" / assignment)
    nbgrader(root, "generate_assignment", assignment, "--force")
    return root


def notebook_path(course: Path, step: str, assignment: str, student: str | None = None) -> Path:
    parts = [course, step] + ([student] if student else []) + [assignment, f"{assignment}.ipynb"]
    return Path(*parts)


def reference_answers(assignment: str) -> dict[str, str]:
    """grade_id → source of every answer cell of the source notebook, markers removed."""
    nb = nbformat.read(REPO / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    return {
        cell.metadata["nbgrader"]["grade_id"]: _MARKERS.sub("", cell.source)
        for cell in nb.cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    }


def test_points(assignment: str) -> dict[str, float]:
    """grade_id → points of every test cell of the source notebook, in notebook order."""
    nb = nbformat.read(REPO / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: float(c.metadata["nbgrader"].get("points", 0))
            for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")}


test_points.__test__ = False  # a helper, not a pytest test


def submit(course: Path, assignment: str, student: str, answers: dict[str, str]) -> Path:
    """Write ``submitted/<student>/<assignment>/<assignment>.ipynb``: the release with
    the answer cells named in ``answers`` replaced (the others keep the stub)."""
    nb = nbformat.read(notebook_path(course, RELEASE, assignment), as_version=4)
    unknown = set(answers) - {c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells}
    assert not unknown, f"no answer cells named {sorted(unknown)}"
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    path = notebook_path(course, "submitted", assignment, student)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def mutate(answers: dict[str, str], grade_id: str, old: str, new: str) -> dict[str, str]:
    """A copy of ``answers`` with ``old`` replaced by ``new`` in one cell (``old`` must occur)."""
    assert old in answers[grade_id], f"{old!r} not found in answer cell {grade_id!r}"
    changed = dict(answers)
    changed[grade_id] = answers[grade_id].replace(old, new)
    return changed


def scores(course: Path, assignment: str) -> dict[str, dict[str, tuple[float, float]]]:
    """student → {grade_id: (score, max_score)} for every graded cell, plus
    ``"total"``, read from the course gradebook."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        result = {}
        for submission in gradebook.assignment_submissions(assignment):
            cells = {}
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    cells[grade.name] = (grade.score, grade.max_score)
            cells["total"] = (submission.score, submission.max_score)
            result[submission.student.id] = cells
        return result


def _names(source: str) -> tuple[set[str], set[str]]:
    """(names a cell reads, names it binds) of a code cell's source (IPython magics dropped);
    a cell that does not parse reads every word of it."""
    import ast

    try:
        tree = ast.parse(re.sub(r"^[ \t]*[%!].*$", "", source, flags=re.MULTILINE))
    except SyntaxError:
        return set(re.findall(r"\w+", source)), set()
    loads, binds = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loads if isinstance(node.ctx, ast.Load) else binds).add(node.id)
        elif isinstance(node, ast.arg):
            binds.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            binds.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            binds |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            binds.add(node.name)
    return loads, binds


def test_cell_dependencies(assignment: str, versions: list[dict[str, str]]) -> dict[str, set[str]]:
    """test grade_id → the answer cells (grade_ids, named after the function they define) whose
    code the test cell can run: the answers it names, the answers those answers name (in any
    of ``versions`` of the answer cells), and the same for the earlier test cells that bind a
    name it reads (e.g. a hidden import).  Used to pack several wrong answers into one
    notebook only where none can change what another's test cells see."""
    nb = nbformat.read(REPO / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    answers = set(reference_answers(assignment))
    calls = {name: set() for name in answers}  # answer → answers its code names, in any version
    for version in versions:
        for name, source in version.items():
            if name in answers:
                calls[name] |= _names(source)[0] & answers

    def closure(names: set[str]) -> set[str]:
        done, todo = set(), list(names)
        while todo:
            name = todo.pop()
            if name not in done:
                done.add(name)
                todo += calls[name]
        return done

    deps, bound_by = {}, {}  # bound_by: name → the latest test cell that binds it
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("grade"):
            continue
        loads, binds = _names(cell.source)
        cell_deps = closure(loads & answers)
        for name in loads - binds:
            if name in bound_by:
                cell_deps |= deps[bound_by[name]]
        deps[meta["grade_id"]] = cell_deps
        bound_by.update({name: meta["grade_id"] for name in binds})
    return deps


test_cell_dependencies.__test__ = False  # a helper, not a pytest test


def pack_wrong_answers(assignment: str, reference: dict[str, str],
                       wrong: dict[str, tuple[dict[str, str], list[str]]]) -> list[list[str]]:
    """Wrong answers packed into as few submissions as is safe: members of a pack change
    disjoint answer cells, and no member's cells that must lose points can run an answer
    cell another member changed (:func:`test_cell_dependencies`).  Each member then loses
    points in its cells for its own mistake alone, as in a notebook of its own, while the
    class needs a third as many notebooks graded.  Greedy, in the order of ``wrong``."""
    deps = test_cell_dependencies(assignment, [reference] + [answers for answers, _ in wrong.values()])
    changed = {sid: {name for name in set(reference) | set(answers) if answers.get(name) != reference.get(name)}
               for sid, (answers, _) in wrong.items()}
    reach = {sid: set().union(*(deps[cell] for cell in cells)) for sid, (_, cells) in wrong.items()}
    packs: list[list[str]] = []
    for sid in wrong:
        for pack in packs:
            if all(not (changed[sid] & (changed[m] | reach[m])) and not (reach[sid] & changed[m]) for m in pack):
                pack.append(sid)
                break
        else:
            packs.append([sid])
    return packs


def packed_answers(reference: dict[str, str], members: list[dict[str, str]]) -> dict[str, str]:
    """The answer cells of a pack: the reference, with each member's changed cells."""
    answers = dict(reference)
    for member in members:
        answers.update({name: source for name, source in member.items() if source != reference.get(name)})
    return answers
