"""``nnh grade`` on a real class, with the real nbgrader (no mocked grader).

One synthetic class of the ``regularization`` assignment (``tests/gradeclass.py``:
honest, blank, wrong and adversarial students) is graded once with ``--jobs 2``;
the tests check each student's status and scores in the CSV and the gradebook,
the feedback, nbgrader's own tools on the result, the runtime integrity guard
on tampering the static scan misses, and that serial ``nbgrader autograde``, a
Dask ``LocalCluster`` and an interrupted-then-resumed run give the same grades.
Other tests (a second xdist group, so that the two halves can run side by side)
check the long-lived grading process (a stuck or killed one costs one student;
no state passes between students), clear errors for bad input, and run
nbgrader's whole file-system exchange loop around ``nnh grade``.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat
import pytest

import gradeclass
import nbgrading
from nnh.grade.scan import scan_cell, scan_notebook

# two groups: the tests of the graded class (one fixture), and the tests that make their own
pytestmark = [pytest.mark.grading]
CLASS_GROUP = pytest.mark.xdist_group("nnh-grade")

A = gradeclass.ASSIGNMENT
TIMEOUT = 40  # --timeout: the per-notebook limit (the per-cell one is gradeclass.CELL_TIMEOUT)
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


@CLASS_GROUP
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
        if float(row["score"]) != cells["total"] or float(row["max_score"]) != gradeclass.MAX:
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


@CLASS_GROUP
def test_a_flood_of_output_is_cut_as_it_arrives(graded):
    """6 MB of output in one cell, 3 MB of display metadata in another: the autograded notebook
    and the feedback keep about the 1 MB cap, with a note in each cell; the reference's
    notebook is untouched."""
    course, *_ = graded
    flooded = nbgrading.notebook_path(course, "autograded", A, "s23_floods_output")
    assert flooded.stat().st_size < 2.5 * 2**20, flooded.stat().st_size
    feedback = nbgrading.notebook_path(course, "feedback", A, "s23_floods_output").with_suffix(".html")
    assert feedback.stat().st_size < 4 * 2**20, feedback.stat().st_size
    nb = nbformat.read(flooded, as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "l2_penalty")
    notes = [o for o in cell.outputs if o.output_type == "display_data"
             and "output truncated" in o.get("data", {}).get("text/plain", "")]
    assert len(notes) == 1 and "this cell's limit of 1 MB" in notes[0].data["text/plain"]
    printed = sum(len(o.get("text", "")) for o in cell.outputs if o.output_type == "stream")
    assert 0.5 * 2**20 < printed <= 2**20
    grad = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "l2_penalty_grad")
    assert [o.output_type for o in grad.outputs] == ["display_data"]  # the note alone, not the display
    assert "output truncated" in grad.outputs[0].data["text/plain"]
    reference = nbformat.read(nbgrading.notebook_path(course, "autograded", A, "s01_reference"), as_version=4)
    assert not any("output truncated" in str(o) for c in reference.cells if c.cell_type == "code" for o in c.outputs)


@CLASS_GROUP
def test_attackers_leave_nothing_behind(graded):
    """s24-s27 of the class read the course, kill every process they may signal, leave
    a detached process and a file in /tmp, and fill /tmp: after the run nothing of
    theirs is left, and everybody else got their scores (the test above)."""
    process, path = gradeclass.LEFT_BEHIND
    running = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            running.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            pass
    assert not [line for line in running if process in line], "a student's process outlived the run"
    assert not os.path.exists(path) and not os.path.exists("/tmp/nnh-fill"), "a student's file is in /tmp"


@contextlib.contextmanager
def _traversable(paths: list[str]):
    """Let every user pass (o+x) through the folders above ``paths`` (e.g. a Python under
    /root, where pyenv puts it); put their modes back afterwards."""
    changed = {}
    for path in paths:
        folder = Path(path).resolve()
        for parent in [folder, *folder.parents]:
            mode = parent.stat().st_mode
            if parent.is_dir() and not mode & 0o001 and parent not in changed:
                changed[parent] = mode
                os.chmod(parent, (mode | 0o001) & 0o7777)
    try:
        yield
    finally:
        for parent, mode in changed.items():
            os.chmod(parent, mode & 0o7777)


@CLASS_GROUP
def test_root_and_non_root_runs_give_the_same_grades(graded):
    """The same students graded by an unprivileged grader (bubblewrap in a user namespace,
    the kernel under the grader's own uid, memory capped as address space, no cgroup) get
    every test cell's points that the root run gave them, attackers included."""
    if os.geteuid() != 0:
        pytest.skip("the other side of the comparison needs root, to run a grader as another user")
    import pwd

    _, _, book, _ = graded
    names = ["s01_reference", "s03_wrong", "s25_kills_everyone", "s27_fills_tmp"]
    nobody = pwd.getpwnam("nobody")
    folder = Path(tempfile.mkdtemp(prefix="nnh-unprivileged-"))
    try:
        course = gradeclass.make_class(folder / "course", names)
        (folder / "home").mkdir()
        for parent, dirs, files in os.walk(folder):
            for name in [parent, *(os.path.join(parent, n) for n in dirs + files)]:
                os.lchown(name, nobody.pw_uid, nobody.pw_gid)
        os.chmod(folder, 0o755)
        environment = {k: v for k, v in nbgrading.env().items() if not k.startswith(("JUPYTER_", "IPYTHON", "XDG_"))}
        environment.update(HOME=str(folder / "home"), JUPYTER_PLATFORM_DIRS="1", USER="nobody", LOGNAME="nobody")
        import nnh

        with _traversable([sys.executable, sys.prefix, sys.base_prefix, str(Path(nnh.__file__).parent)]):
            result = subprocess.run(["runuser", "-u", "nobody", "--", NNH, "grade", A, "--timeout", str(TIMEOUT),
                                     "--jobs", "2", "--no-preflight", "--csv", "grades.csv"],
                                    cwd=course, env=environment, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
        unprivileged = grades(course)
        assert {name: unprivileged[name] for name in names} == {name: book[name] for name in names}
        rows = gradeclass.read_csv(course / "grades.csv")
        assert {name: rows[name]["status"] for name in names} == {name: "ok" for name in names}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@CLASS_GROUP
def test_csv_has_the_documented_columns(graded):
    course, *_ = graded
    with open(course / "grades.csv", newline="") as fh:
        assert next(csv.reader(fh)) == ["student_id", "assignment", "score", "max_score", "status"]


@CLASS_GROUP
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
    # nbgrader's own feedback (scores per cell) for a normally graded student; the boxed
    # kernel saw nbgrader's NBGRADER_EXECUTION, so the ungraded "Try it" cells did not train
    reference = nbgrading.notebook_path(course, "feedback", A, "s01_reference").with_suffix(".html").read_text()
    assert "test_l2_penalty_values" in reference
    assert reference.count("Not run by nbgrader: this cell is not graded.") == 2 * 2  # code and output, 2 cells


def _page_text(path: Path) -> str:
    """The text of a feedback page, as a reader sees it (tags removed, entities decoded)."""
    import html
    import re

    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text()))


@CLASS_GROUP
def test_feedback_hides_the_code_of_hidden_tests(graded):
    """Issue 14 (jupyter/nbgrader#917): by default the feedback shows every test's name,
    points and message, but no line of a hidden test; autograded/ keeps everything."""
    import re

    from nnh.grade.feedback import HIDDEN_REGION, HIDDEN_NOTE

    course, _, _, _ = graded
    source = nbformat.read(nbgrading.REPO / "solutions" / A / f"{A}.ipynb", as_version=4)
    hidden, visible, elsewhere = set(), set(), set()
    for cell in source.cells:
        regions = "".join(m.group(0) for m in HIDDEN_REGION.finditer(cell.source))
        outside = {line.strip() for line in HIDDEN_REGION.sub("", cell.source).splitlines()}
        elsewhere |= outside  # also the Markdown, which may quote a line that a hidden test uses
        if cell.metadata.get("nbgrader", {}).get("grade"):
            visible |= {line for line in outside if len(line) >= 12}
            hidden |= {line.strip() for line in regions.splitlines()
                       if len(line.strip()) >= 12 and not re.match(r"### (BEGIN|END) HIDDEN", line.strip())}
    hidden = {line for line in hidden if not any(line in other for other in elsewhere)}
    assert len(hidden) >= 20 and visible
    for name in ("s01_reference", "s03_wrong", "s04_delegates", "s12_kills_kernel"):
        text = _page_text(nbgrading.notebook_path(course, "feedback", A, name).with_suffix(".html"))
        assert HIDDEN_NOTE in text and sum(line in text for line in visible) >= len(visible) // 2, name
        leaked = sorted(line for line in hidden if line in text)
        assert not leaked, f"{name}: the feedback shows hidden test lines {leaked[:5]}"
        kept = nbgrading.notebook_path(course, "autograded", A, name).read_text()
        assert "BEGIN HIDDEN TESTS" in kept, f"{name}: autograded/ must keep the hidden tests"
    # a hidden check's message is shown (here: s18's l2_penalty accepts lam = nan, which only a
    # hidden test tries), and so is why a reference the box withholds failed
    hidden_only = _page_text(nbgrading.notebook_path(course, "feedback", A, "s18_patches_nnh_grading")
                             .with_suffix(".html"))
    assert re.search(r"AssertionError: [^\n]*expected it to raise ValueError", hidden_only), \
        "the failed hidden test's message is shown"
    delegates = _page_text(nbgrading.notebook_path(course, "feedback", A, "s04_delegates").with_suffix(".html"))
    assert re.search(r"NotImplementedError: [^\n]*withheld while notebooks are graded", delegates)


@CLASS_GROUP
def test_nbgrader_tools_read_the_result(graded):
    """The gradebook and autograded/ are nbgrader's: `nbgrader export` and
    `nbgrader generate_feedback` work on them."""
    course, rows, book, _ = graded
    nbgrading.nbgrader(course, "export", "--to", "export.csv")
    with open(course / "export.csv", newline="") as fh:
        exported = {r["student_id"]: float(r["score"]) for r in csv.DictReader(fh) if r["assignment"] == A}
    assert exported == {name: book[name]["total"] for name in rows}
    autograded = nbgrading.notebook_path(course, "autograded", A, "s16_renamed_reordered_sys_exit")
    assert autograded.exists()
    nb = nbformat.read(autograded, as_version=4)
    order = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
    assert order.index("l2_penalty") < order.index("test_l2_penalty_values"), "tests moved back after the answer"


@CLASS_GROUP
def test_runtime_guard_catches_what_the_static_scan_misses(graded):
    """Tampering written so that the static scan cannot see it (``getattr`` of a
    string instead of ``setattr``; a patch made when a test calls the answer; the
    guard itself replaced; an AST transformer; a patch undone when the cell ends) is
    caught by the integrity guard inside the kernel, which the feedback notes; the judge
    decides the tests (the class's expected scores), so it changes no points.  Hiding
    every error in the kernel's messaging escapes both checks, and changes no points either."""
    course, rows, *_ = graded
    source = nbformat.read(course / "solutions" / A / f"{A}.ipynb", as_version=4)
    for name in gradeclass.EVADE_SCAN:
        submitted = nbformat.read(nbgrading.notebook_path(course, "submitted", A, name), as_version=4)
        assert scan_notebook(submitted, source) == [], f"{name}: meant to get past the static scan"
        assert rows[name]["status"] == "tampered", name
        feedback = nbgrading.notebook_path(course, "feedback", A, name).with_suffix(".html").read_text()
        assert "nnh grade: tampering: the integrity check" in feedback, name  # a note: the judge decided
    for name in gradeclass.EVADE_BOTH:
        submitted = nbformat.read(nbgrading.notebook_path(course, "submitted", A, name), as_version=4)
        assert scan_notebook(submitted, source) == [], f"{name}: meant to get past the static scan"
        assert rows[name]["status"] == "ok", name  # unseen, and graded on its answers alone


@pytest.mark.xdist_group("nnh-grade-solo")
def test_without_the_judge_the_guard_decides(tmp_path):
    """``--no-judge``: the tests run in the kernel, and the guard's finding costs the tests
    from there on; tampering that escapes the scan and the guard (a kernel that hides its
    errors) then gets full marks for wrong answers, which is why the judge is the default."""
    names = ["s01_reference", "s20_evades_scan", *gradeclass.EVADE_BOTH]
    course = gradeclass.make_class(tmp_path / "course", names)
    nnh_grade(course, "--jobs", "2", "--no-judge", "--no-preflight", "--csv", "grades.csv")
    rows, book = gradeclass.read_csv(course / "grades.csv"), grades(course)
    assert rows["s01_reference"]["status"] == "ok" and book["s01_reference"]["total"] == gradeclass.MAX
    assert rows["s20_evades_scan"]["status"] == "tampered" and book["s20_evades_scan"]["total"] == 0
    feedback = nbgrading.notebook_path(course, "feedback", A, "s20_evades_scan").with_suffix(".html").read_text()
    assert "TamperingDetected" in feedback
    for name in gradeclass.EVADE_BOTH:
        assert rows[name]["status"] == "ok" and book[name]["total"] == gradeclass.MAX, (name, book[name])


@CLASS_GROUP
def test_serial_nbgrader_autograde_agrees_on_honest_students(graded, tmp_path):
    _, _, book, _ = graded
    honest = [name for name, s in gradeclass.students().items() if s.honest]
    course = gradeclass.make_class(tmp_path / "serial", honest + ["s06_stderr_noise"])
    nbgrading.nbgrader(course, "autograde", A, "--force")
    serial = grades(course)
    for name in honest:
        assert serial[name] == book[name], f"{name}: nbgrader {serial[name]} vs nnh grade {book[name]}"
    # and the noise a correct answer writes to stderr costs points with plain nbgrader only
    assert serial["s06_stderr_noise"]["total"] < book["s06_stderr_noise"]["total"] == gradeclass.MAX


DASK_SUBSET = ["s01_reference", "s11_os_exit", "s20_evades_scan"]
RESUME_SUBSET = ["s01_reference", "s02_blank", "s11_os_exit"]


@CLASS_GROUP
def test_dask_local_cluster_gives_the_same_gradebook(graded, tmp_path):
    distributed = pytest.importorskip("distributed")
    _, _, book, _ = graded
    course = gradeclass.make_class(tmp_path / "dask", DASK_SUBSET)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        nnh_grade(course, "--scheduler", cluster.scheduler_address, "--csv", "grades.csv")
    on_dask = grades(course)
    assert set(on_dask) == set(DASK_SUBSET)
    for name in DASK_SUBSET:
        assert on_dask[name] == book[name], name
    rows = gradeclass.read_csv(course / "grades.csv")
    assert {n: r["status"] for n, r in rows.items()} == {n: gradeclass.students()[n].status for n in DASK_SUBSET}


@CLASS_GROUP
def test_interrupted_run_resumes_to_the_same_gradebook(graded, tmp_path):
    _, _, book, _ = graded
    course = gradeclass.make_class(tmp_path / "resume", RESUME_SUBSET)
    manifest = course / "autograded" / ".nnh-grade" / f"{A}.json"
    # as typed in a terminal: Ctrl-C not ignored (SIG_IGN and a signal mask are inherited
    # through exec, and this test process may have either from code run before)
    terminal = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                "signal.pthread_sigmask(signal.SIG_SETMASK, set()); os.execv(sys.argv[1], sys.argv[1:])")
    process = subprocess.Popen([sys.executable, "-c", terminal, NNH, "grade", A, "--jobs", "1", "--timeout",
                                str(TIMEOUT), "--no-preflight"], cwd=course, env=nbgrading.env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not manifest.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)  # Ctrl-C after the first student is merged
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "interrupted" in err
    partial = grades(course)
    assert 1 <= len(partial) < len(RESUME_SUBSET)
    for name, cells in partial.items():
        assert cells == book[name], f"{name} was merged half-way"
    result = nnh_grade(course, "--jobs", "2", "--no-preflight")
    assert f"{len(partial)} student(s) skipped" in result.stdout
    resumed = grades(course)
    assert resumed == {name: book[name] for name in RESUME_SUBSET}
    # a changed submission is graded again without --force, the others are skipped
    nbgrading.submit(course, A, "s02_blank", nbgrading.reference_answers(A))
    result = nnh_grade(course, "--jobs", "2", "--csv", "again.csv", "--no-preflight")
    assert f"{len(RESUME_SUBSET) - 1} student(s) skipped" in result.stdout
    assert grades(course)["s02_blank"]["total"] == gradeclass.MAX
    assert float(gradeclass.read_csv(course / "again.csv")["s02_blank"]["score"]) == gradeclass.MAX


def test_ctrl_c_during_a_merge_waits_for_its_end():
    """Ctrl-C interrupts at once, except during a student's merge: then right after it.
    SIGINT is never blocked (a blocked signal goes to another thread and can be lost)."""
    from nnh.grade import pool

    assert threading.current_thread() is threading.main_thread()
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh `nnh` process
    mask = signal.pthread_sigmask(signal.SIG_SETMASK, set())
    try:
        _check_deferred_ctrl_c(pool)
    finally:
        signal.signal(signal.SIGINT, inherited)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _check_deferred_ctrl_c(pool) -> None:
    state = {"merging": False, "ctrl_c": False}
    with pool._deferred_ctrl_c(state):
        assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == set()
        state["merging"] = True
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 2
        while not state["ctrl_c"] and time.monotonic() < deadline:
            time.sleep(0.01)  # the handler runs: no KeyboardInterrupt inside a merge
        assert state["ctrl_c"] is True
        state["merging"] = False
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    # a Ctrl-C the user's shell makes the command ignore (a background job) stays ignored
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with pool._deferred_ctrl_c(state):
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.xdist_group("nnh-grade-solo")
def test_bad_input_is_a_clear_error(tmp_path, capsys, monkeypatch):
    from nnh.grade import cli

    monkeypatch.setenv("PATH", nbgrading.env()["PATH"])  # nbgrader runs alembic for a new gradebook
    course = gradeclass.make_class(tmp_path / "c", [])
    result = subprocess.run([NNH, "grade", "nope"], cwd=course, env=nbgrading.env(), capture_output=True, text=True)
    assert result.returncode == 2  # the console script's exit status
    assert "nope" in result.stderr and "error" in result.stderr
    for args, says in (([A, "--jobs", "0"], "--jobs"), ([A, "--timeout", "-1"], "--timeout"),
                       ([A, "--memory", "-5"], "--memory"), ([A, "--max-output", "0"], "--max-output"),
                       ([A, "--max-output", "nan"], "--max-output"), ([A, "--student", "nobody_here"], "nobody_here")):
        assert cli.main([*args, "--course", str(course)]) == 2, args
        error = capsys.readouterr().err
        assert says in error and "error" in error, (args, error)


@pytest.mark.xdist_group("nnh-grade-solo")
def test_preflight_stops_before_any_student_when_the_reference_would_lose_points(tmp_path):
    """Issue 13: a ``--memory`` cap below what the reference's kernel needs (as address
    space, 2048 MB: TensorFlow aborts at import; as resident memory in the sandbox's
    cgroup, 30 MB: a kernel forked from the warm zygote cannot start) does not zero every
    honest student: the preflight grades the reference solution first, and the run stops
    with an error that names the limit and what failed."""
    resident = gradeclass.cgroups_writable()
    course = gradeclass.make_class(tmp_path / "c", ["s01_reference"])
    cap = "30" if resident else "2048"
    result = nnh_grade(course, "--memory", cap, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "preflight failed" in result.stderr and f"--memory {cap} MB" in result.stderr
    if resident:
        assert "status 'memory'" in result.stderr and f"more than {cap} MB of resident memory" in result.stderr
    else:
        assert f"{A}/test_" in result.stderr and "kernel died" in result.stderr
    assert grades(course) == {}, "no student was graded"


def test_no_student_is_kept_before_the_preflight_passes():
    """The preflight is graded alongside the first students (its slot does not wait alone);
    their results are held until its own has come: kept, in order, if it passed; dropped,
    with the preflight's error, if it failed."""
    from nnh.grade.preflight import PREFLIGHT_STUDENT, Gate
    from nnh.grade.settings import GradeError

    def result(student):
        return {"student": student, "status": "ok"}

    def check(outcome, payload):
        if outcome["status"] != "ok":
            raise GradeError("preflight failed")

    kept = []
    gate = Gate({"student": PREFLIGHT_STUDENT}, check, kept.append)
    gate(result("a"))
    gate(result("b"))
    assert kept == [], "nothing is kept before the preflight's result"
    gate(result(PREFLIGHT_STUDENT))
    gate(result("c"))
    assert [r["student"] for r in kept] == ["a", "b", "c"]
    kept.clear()
    gate = Gate({"student": PREFLIGHT_STUDENT}, check, kept.append)
    gate(result("a"))
    with pytest.raises(GradeError, match="preflight failed"):
        gate({"student": PREFLIGHT_STUDENT, "status": "memory"})
    assert kept == []
    gate = Gate(None, check, kept.append)  # no preflight (passed before, or --no-preflight)
    gate(result("a"))
    assert [r["student"] for r in kept] == ["a"]


@pytest.mark.xdist_group("nnh-grade-solo")
def test_a_stuck_or_killed_grader_costs_only_its_student(tmp_path, monkeypatch):
    """The long-lived grading process: a student over the wall-clock limit is
    stopped (status timeout), a grading process killed under a student costs that
    student only (status error), and the next student is graded by a fresh one."""
    from nnh.grade import course as courses, pool, settings, task

    monkeypatch.setenv("PATH", nbgrading.env()["PATH"])  # nbgrader runs alembic for a new gradebook

    course = courses.load_course(gradeclass.make_class(tmp_path / "c", ["s01_reference", "s09_slow_notebook"]))
    source, template = courses._files(course.path("source", ".", A)), courses.template_gradebook(course, A)
    limits = task.grading_limits(course, TIMEOUT, settings.DEFAULT_MEMORY, "")
    slow, honest = (task.make_payload(course, A, name, source, template, limits)
                    for name in ("s09_slow_notebook", "s01_reference"))
    try:
        first = pool.run_task(slow, wall_timeout=12)
        assert first["status"] == "timeout" and "was stopped" in first["details"][0], first
        server = pool._thread_server(limits["sandbox"])  # a new one: the stuck one was killed
        killer = threading.Timer(6, os.killpg, (server.process.pid, signal.SIGKILL))
        killer.start()
        folder = server.tmp
        second = pool.run_task(slow, wall_timeout=120)
        killer.join()
        assert second["status"] == "error" and "exited with code -9" in second["details"][0], second
        assert not os.path.exists(folder), "the killed server's folder (its box, its student's copy) is left"
        third = pool.run_task(honest, wall_timeout=120)
        assert third["status"] == "ok", third
        scores = third["notebooks"][A]["grades"]
        assert sum(cell["auto_score"] for cell in scores.values()) == gradeclass.MAX
    finally:
        pool.stop_servers()


@pytest.mark.xdist_group("nnh-grade-solo")
def test_a_grading_server_keeps_no_state_between_students(tmp_path):
    """What grading one student changes in the long-lived process is put back, and
    the per-student preprocessor settings live on classes made afresh per student."""
    import warnings

    from nnh.grade.execute import _preprocessors
    from nnh.grade.serve import _ProcessState

    before = (dict(os.environ), os.getcwd(), list(sys.path), list(warnings.filters))
    state = _ProcessState()
    try:
        os.environ.update(JUPYTER_PATH=str(tmp_path), HOME=str(tmp_path), JUPYTER_RUNTIME_DIR=str(tmp_path))
        os.chdir(tmp_path)
        sys.path.insert(0, str(tmp_path))
        warnings.simplefilter("error")
    finally:
        state.restore()
    assert (dict(os.environ), os.getcwd(), list(sys.path), list(warnings.filters)) == before
    first, second = _preprocessors(), _preprocessors()
    first[0].sandbox_owner, first[0].notebook_timeout, first[0].guard = (65534, 65534), 5.0, (["numpy"], {})
    first[2].source_order["regularization"] = ["imports"]
    assert (second[0].sandbox_owner, second[0].notebook_timeout, second[0].guard) == (None, None, None)
    assert second[2].source_order == {}


@pytest.mark.xdist_group("nnh-grade-solo")
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

    # graded without feedback, which nbgrader writes afterwards (as after manual grading)
    nnh_grade(course, "--jobs", "2", "--csv", "grades.csv", "--no-preflight", "--no-feedback")
    rows = gradeclass.read_csv(course / "grades.csv")
    assert {n: (float(r["score"]), r["status"]) for n, r in rows.items()} == {me: (gradeclass.MAX, "ok"), "carol": (0.0, "ok")}
    assert not [p for p in (course / "feedback").rglob("*") if p.is_file()]
    # a run with feedback grades again, unchanged, a student graded without it
    nnh_grade(course, "--student", "carol", "--no-preflight")
    assert (course / "feedback" / "carol" / A / f"{A}.html").exists()
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

    from nnh.grade.scan import _module_aliases

    for assignment in ("schedules", "regularization", "dropout", "augmentation"):
        module = importlib.import_module(f"submissions_{assignment}")
        source = nbformat.read(nbgrading.REPO / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
        aliases = _module_aliases([c.source for c in source.cells if c.cell_type == "code"])
        classes = {"reference": module.REFERENCE, **module.CORRECT,
                   **{name: answers for name, (answers, _) in module.WRONG.items()}}
        for student, answers in classes.items():
            for cell, code in answers.items():
                assert scan_cell(code, aliases) == [], f"{assignment}/{student}/{cell}"
