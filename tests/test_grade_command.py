"""``nnh grade`` on a real class, with the real nbgrader (no mocked grader).

One synthetic class of the ``regularization`` assignment (``tests/gradeclass.py``:
honest, blank, wrong and adversarial students) is graded once with ``--jobs 2``;
the tests check each student's status and scores in the CSV and the gradebook,
the feedback, nbgrader's own tools on the result, and that serial
``nbgrader autograde``, a Dask ``LocalCluster`` and an interrupted-then-resumed
run give the same grades.  The last test runs nbgrader's whole file-system
exchange loop around ``nnh grade``.
"""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

import gradeclass
import nbgrading
from nnh._sandbox import scan_cell

pytestmark = [pytest.mark.grading, pytest.mark.xdist_group("nnh-grade")]

A = gradeclass.ASSIGNMENT
TIMEOUT = 60  # --timeout: the per-notebook limit (the per-cell one is gradeclass.CELL_TIMEOUT)
NNH = str(Path(sys.executable).parent / "nnh")


def nnh_grade(course: Path, *args: str, check: bool = True, timeout: float = 1500) -> subprocess.CompletedProcess:
    result = subprocess.run([NNH, "grade", A, "--timeout", str(TIMEOUT), *args], cwd=course, env=nbgrading.env(),
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"nnh grade failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def grades(course: Path) -> dict[str, dict[str, float]]:
    """student → {test cell: score} (and "total"), from the course gradebook."""
    return {student: {cell: score for cell, (score, _) in cells.items()}
            for student, cells in nbgrading.scores(course, A).items()}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = gradeclass.make_class(tmp_path_factory.mktemp("class"))
    started = time.monotonic()
    result = nnh_grade(course, "--jobs", "2", "--csv", "grades.csv")
    seconds = time.monotonic() - started
    print(f"\nnnh grade --jobs 2: {len(gradeclass.students())} students in {seconds:.0f} s")
    return course, gradeclass.read_csv(course / "grades.csv"), grades(course), result


def test_every_student_gets_the_right_status_and_scores(graded):
    course, rows, book, _ = graded
    problems = []
    for name, student in gradeclass.students().items():
        row = rows.get(name)
        if row is None:
            problems.append(f"{name}: no CSV row")
            continue
        cells = book[name]
        if row["status"] != student.status:
            problems.append(f"{name}: status {row['status']}, expected {student.status}")
        if float(row["score"]) != cells["total"] or float(row["max_score"]) != 19.0:
            problems.append(f"{name}: CSV {row['score']}/{row['max_score']} but gradebook {cells['total']}")
        if student.total is not None and cells["total"] != student.total:
            problems.append(f"{name}: total {cells['total']}, expected {student.total}")
        maximum = {cell: score for cell, score in nbgrading.scores(course, A)[name].items()}
        for cell in student.full:
            if cells[cell] != maximum[cell][1]:
                problems.append(f"{name}: {cell} scored {cells[cell]}, expected full marks")
        for cell in student.zero:
            if cells[cell] != 0:
                problems.append(f"{name}: {cell} scored {cells[cell]}, expected zero")
    assert not problems, "\n".join(problems)
    assert set(rows) == set(gradeclass.students())
    assert {r["status"] for r in rows.values()} == {"ok", "timeout", "kernel_died", "memory", "tampered", "error"}


def test_csv_has_the_documented_columns(graded):
    course, *_ = graded
    with open(course / "grades.csv", newline="") as fh:
        assert next(csv.reader(fh)) == ["student_id", "assignment", "score", "max_score", "status"]


def test_feedback_says_why(graded):
    course, rows, *_ = graded
    for name, student in gradeclass.students().items():
        page = nbgrading.notebook_path(course, "feedback", A, name).with_suffix(".html")
        assert page.exists(), f"{name}: no feedback"
        text = page.read_text()
        if student.status != "ok":
            assert f"Grading status: {student.status}" in text, name
        if student.detail:
            assert student.detail.replace("'", "&#x27;") in text, f"{name}: feedback lacks {student.detail!r}"
    # nbgrader's own feedback (scores per cell) for a normally graded student
    assert "test_l2_penalty_values" in nbgrading.notebook_path(course, "feedback", A, "s01_reference") \
        .with_suffix(".html").read_text()


def test_nbgrader_tools_read_the_result(graded):
    """The gradebook and autograded/ are nbgrader's: `nbgrader export` and
    `nbgrader generate_feedback` work on them."""
    course, rows, book, _ = graded
    nbgrading.nbgrader(course, "export", "--to", "export.csv")
    with open(course / "export.csv", newline="") as fh:
        exported = {r["student_id"]: float(r["score"]) for r in csv.DictReader(fh) if r["assignment"] == A}
    assert exported == {name: book[name]["total"] for name in rows}
    autograded = nbgrading.notebook_path(course, "autograded", A, "s19_tests_reordered")
    assert autograded.exists()
    nb = nbformat.read(autograded, as_version=4)
    order = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
    assert order.index("l2_penalty") < order.index("test_l2_penalty_values"), "tests moved back after the answer"


def test_serial_nbgrader_autograde_agrees_on_honest_students(graded, tmp_path):
    _, _, book, _ = graded
    honest = [name for name, s in gradeclass.students().items() if s.honest]
    course = gradeclass.make_class(tmp_path / "serial", honest)
    nbgrading.nbgrader(course, "autograde", A, "--force")
    serial = grades(course)
    for name in honest:
        assert serial[name] == book[name], f"{name}: nbgrader {serial[name]} vs nnh grade {book[name]}"
    # and the noise a correct answer writes to stderr costs points with plain nbgrader only
    noisy = gradeclass.make_class(tmp_path / "noisy", ["s07_stderr_noise"])
    nbgrading.nbgrader(noisy, "autograde", A, "--force")
    assert grades(noisy)["s07_stderr_noise"]["total"] < book["s07_stderr_noise"]["total"] == 19.0


SUBSET = ["s01_reference", "s03_blank", "s11_os_exit", "s20_patches_nnh_grading"]


def test_dask_local_cluster_gives_the_same_gradebook(graded, tmp_path):
    distributed = pytest.importorskip("distributed")
    _, _, book, _ = graded
    course = gradeclass.make_class(tmp_path / "dask", SUBSET)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        nnh_grade(course, "--scheduler", cluster.scheduler_address, "--csv", "grades.csv")
    on_dask = grades(course)
    assert set(on_dask) == set(SUBSET)
    for name in SUBSET:
        assert on_dask[name] == book[name], name
    rows = gradeclass.read_csv(course / "grades.csv")
    assert {n: r["status"] for n, r in rows.items()} == {n: gradeclass.students()[n].status for n in SUBSET}


def test_interrupted_run_resumes_to_the_same_gradebook(graded, tmp_path):
    _, _, book, _ = graded
    course = gradeclass.make_class(tmp_path / "resume", SUBSET)
    manifest = course / "autograded" / ".nnh-grade" / f"{A}.json"
    process = subprocess.Popen([NNH, "grade", A, "--jobs", "1", "--timeout", str(TIMEOUT)], cwd=course,
                               env=nbgrading.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not manifest.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)  # Ctrl-C after the first student is merged
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "interrupted" in err
    partial = grades(course)
    assert 1 <= len(partial) < len(SUBSET)
    for name, cells in partial.items():
        assert cells == book[name], f"{name} was merged half-way"
    result = nnh_grade(course, "--jobs", "2")
    assert f"{len(partial)} student(s) skipped" in result.stdout
    resumed = grades(course)
    assert resumed == {name: book[name] for name in SUBSET}
    # a changed submission is graded again without --force, the others are skipped
    nbgrading.submit(course, A, "s03_blank", nbgrading.reference_answers(A))
    result = nnh_grade(course, "--jobs", "2", "--csv", "again.csv")
    assert f"{len(SUBSET) - 1} student(s) skipped" in result.stdout
    assert grades(course)["s03_blank"]["total"] == 19.0
    assert gradeclass.read_csv(course / "again.csv")["s03_blank"]["score"] == "19.0"


def test_unknown_assignment_is_a_clear_error(tmp_path):
    course = nbgrading.make_course(tmp_path / "c", A)
    result = subprocess.run([NNH, "grade", "nope"], cwd=course, env=nbgrading.env(), capture_output=True, text=True)
    assert result.returncode == 2
    assert "nope" in result.stderr and "error" in result.stderr


def test_student_loop_through_nbgrader_exchange(tmp_path):
    """release → fetch → solve → submit → collect → nnh grade → generate_feedback →
    release_feedback → fetch_feedback (the student is the OS user: nbgrader's exchange
    takes the id from it), plus zip_collect of an LMS download for a second student."""
    course = nbgrading.make_course(tmp_path / "course", A)
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    exchange.chmod(0o777)
    with open(course / "nbgrader_config.py", "a") as fh:
        fh.write(f"\nc.Exchange.root = {str(exchange)!r}\n")
    nbgrading.nbgrader(course, "release_assignment", A)
    from nbgrader.utils import get_username

    me = get_username()  # nbgrader's exchange names a submission after the OS user
    home = tmp_path / "student"
    home.mkdir()
    (home / "nbgrader_config.py").write_text(f"c = get_config()\nc.Exchange.root = {str(exchange)!r}\n")

    def student(*args):
        subprocess.run([str(nbgrading.BIN / "nbgrader"), *args], cwd=home, env=nbgrading.env(),
                       capture_output=True, text=True, check=True)

    student("fetch_assignment", A, "--course", "nnh")
    path = home / A / f"{A}.ipynb"
    nb = nbformat.read(path, as_version=4)
    solution = nbgrading.reference_answers(A)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in solution:
            cell.source = solution[grade_id]
    nbformat.write(nb, path)
    student("submit", A, "--course", "nnh")
    nbgrading.nbgrader(course, "collect", A)
    assert [p.name for p in (course / "submitted").iterdir()] == [me]

    # an LMS download of a third student, collected with zip_collect
    import zipfile

    archive = course / "downloaded" / A / "archive"
    archive.mkdir(parents=True)
    release = nbgrading.notebook_path(course, "exercises", A)
    with zipfile.ZipFile(archive / "carol.zip", "w") as zf:
        zf.write(release, f"carol_{A}.ipynb")
    nbgrading.nbgrader(course, "zip_collect", A, "--force",
                       r"--FileNameCollectorPlugin.named_regexp=.*/(?P<student_id>[a-z0-9]+)_(?P<file_id>\w+)")
    assert nbgrading.notebook_path(course, "submitted", A, "carol").exists()

    nnh_grade(course, "--jobs", "2", "--csv", "grades.csv")
    rows = gradeclass.read_csv(course / "grades.csv")
    assert {n: (float(r["score"]), r["status"]) for n, r in rows.items()} == {me: (19.0, "ok"), "carol": (0.0, "ok")}
    nbgrading.nbgrader(course, "generate_feedback", A, "--force")
    # only exchange submissions carry the timestamp release_feedback needs (carol gets hers through the LMS)
    nbgrading.nbgrader(course, "release_feedback", A, "--student", me)
    student("fetch_feedback", A, "--course", "nnh")
    fetched = list((home / A / "feedback").rglob(f"{A}.html"))
    assert fetched and "test_l2_penalty_values" in fetched[0].read_text()


# --------------------------------------------------------------------------- the tampering scan (no kernel)

ALIASES = {"np": "numpy", "math": "math", "nnh": "nnh", "keras": "keras", "_check": "nnh"}


@pytest.mark.parametrize("code", [
    "np.allclose = lambda *a, **k: True",
    "math.isclose = lambda *a, **k: True",
    "import builtins\nbuiltins.isinstance = lambda *a: True",
    "__builtins__.len = lambda x: 0",
    "nnh.grading.check_function = lambda *a, **k: None",
    "import nnh.grading as g\ng.check_raises = print",
    "from nnh import grading\ngrading.check_not_mutated = print",
    "import sys\nsys.modules['nnh.grading'] = object()",
    "import sys\nmods = sys.modules\nmods.pop('nnh')",
    "AssertionError = Warning",
    "class AssertionError(Exception):\n    pass",
    "def isinstance(a, b):\n    return True",
    "np = None",
    "import jax.numpy as np",
    "get_ipython().input_transformers_post.append(lambda lines: [])",
    "ip = get_ipython()\nip.set_custom_exc((Exception,), None)",
    "setattr(np, 'allclose', lambda *a, **k: True)",
    "f = setattr\nf(math, 'isclose', print)",
    "vars(np)['allclose'] = print",
    "np.__dict__['allclose'] = print",
    "exec('np.allclose = print')",
    "__import__('math').isclose = print",
    "import ctypes",
    "import sys\nsys.settrace(lambda *a: None)",
    "def f():\n    global AssertionError\n    AssertionError = Warning",
    "_check.__code__ = (lambda *a, **k: None).__code__",
    "def l2(w, lam):\n    import sys\n    sys._getframe(1).f_globals['np'] = None\n    return 0",
    "for np.e in range(3):\n    pass",
])
def test_scan_flags_tampering(code):
    assert scan_cell(code, ALIASES), code


@pytest.mark.parametrize("code", [
    "def l2_penalty(weights, lam):\n    import numpy as np\n    return float(lam * np.sum(np.square(weights)))",
    "import numpy as np\nimport math\nimport sys\nprint('x', file=sys.stderr)",
    "class Schedule:\n    def __init__(self, a):\n        setattr(self, 'a', a)",
    "def f(x):\n    sum = 0\n    for len in x:\n        sum += len\n    return sum",
    "def l1(w, lam):\n    raise ValueError(f'lam must be >= 0, got {lam}')",
    "x = np.random.default_rng(0).normal(size=3)\nnp.random.seed(0)",
    "def f(self):\n    return self.__class__.__name__",
    "%matplotlib inline\nimport warnings\nwarnings.warn('noise')",
    "def broken(:\n    pass",  # a syntax error is graded by running it
])
def test_scan_accepts_ordinary_code(code):
    assert scan_cell(code, ALIASES) == []


def test_scan_accepts_every_honest_and_wrong_answer_of_every_assignment():
    import importlib

    from nnh._sandbox import _module_aliases

    for assignment in ("schedules", "regularization", "dropout", "augmentation"):
        module = importlib.import_module(f"submissions_{assignment}")
        source = nbformat.read(nbgrading.REPO / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
        aliases = _module_aliases([c.source for c in source.cells if c.cell_type == "code"])
        classes = {"reference": module.REFERENCE, **module.CORRECT,
                   **{name: answers for name, (answers, _) in module.WRONG.items()}}
        for student, answers in classes.items():
            for cell, code in answers.items():
                assert scan_cell(code, aliases) == [], f"{assignment}/{student}/{cell}"
