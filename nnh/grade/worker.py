"""One student, graded in a grading process: a throw-away course with a copy of the
gradebook that holds only the assignment, nbgrader's ``Autograde`` with the
sandbox's kernelspec and preprocessors, the statuses read off the executed
notebooks, the feedback, and the result returned to the single writer.
"""

from __future__ import annotations

import glob
import os
import pickle
import shutil
import traceback
from dataclasses import dataclass, field

from nnh.grade.box import _Box, write_kernelspec
from nnh.grade.confine import _private_home
from nnh.grade.execute import OUTPUT_NOTE, TAMPER_NOTE, _preprocessors
from nnh.grade.feedback import hide_hidden_tests, put_back
from nnh.grade.guard import GUARD_UNAVAILABLE, guarded_modules
from nnh.grade.judge_client import notebook_imports
from nnh.grade.scan import scan_notebook
from nnh.grade.submission import _check_notebooks, _files, _repair_duplicates, _write_files
from nnh.grade.zygote import _Zygote


#: Errors of a cell stopped at its time limit (nbclient's, and the interrupt it sends).
CELL_TIMEOUTS = frozenset({"CellTimeoutError", "TimeoutError", "KeyboardInterrupt"})


@dataclass
class _Student:
    """One student's grading: the task, the throw-away course and what was found."""

    payload: dict
    config: object  # the traitlets Config of the throw-away course
    coursedir: object  # its nbgrader CourseDirectory
    dirs: dict  # source, submitted, autograded and feedback folders of the assignment
    sources: dict  # notebook name -> the source notebook
    result: dict
    box: object = None  # this process's _Box, when the kernel runs in one
    tampering: dict = field(default_factory=dict)  # notebook name -> what the static scan found
    affected: dict = field(default_factory=dict)  # notebook name -> grade_ids that score zero

    @property
    def limits(self) -> dict:
        return self.payload["limits"]

    def detail(self, text: str) -> None:
        self.result["details"].append(text)


def work(payload: dict, tmp: str) -> dict:
    """Autograde one student in ``tmp`` (a fresh directory); see the module docstring."""
    student = _throwaway_course(payload, tmp)
    details, fatal = _check_notebooks(student.dirs["submitted"], sorted(student.sources), {
        name: {c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells} - {None}
        for name, nb in student.sources.items()})
    student.result["details"] = details
    if fatal:
        student.result.update(status="error", details=details + [fatal])
        return student.result
    student.result["details"] += _repair_duplicates(student.dirs["submitted"], sorted(student.sources))
    student.tampering = _scan(student)
    boxed = student.limits.get("sandbox") == "bwrap"
    student.box = _Box.current if boxed else None
    if boxed and student.box is None:
        student.result.update(status="error",
                              details=details + [_Box.error or "the sandbox (bubblewrap) is not available"])
        return student.result
    if boxed and sorted(student.limits.get("withhold", [])) != student.box.names:
        student.result.update(status="error", details=details + [
            "the grader's box withholds other references than this assignment's (a grader bug)"])
        return student.result
    api = _autograder(student, tmp)
    outcome = api.autograde(payload["assignment"], payload["student"], force=True, create=True)
    log = (outcome.get("log") or "") + (outcome.get("error") or "")
    _record_log(student, outcome, log)
    if not outcome["success"] and student.box is not None and student.box.killed_for_memory():
        student.result["status"] = "memory"  # e.g. the kernel could not even start
        student.detail(f"the kernel was killed for using more than {student.limits['memory']} MB of resident "
                       "memory before its notebook could be graded")
    for name in student.sources:
        path = os.path.join(student.dirs["autograded"], name)
        if os.path.exists(path):
            _notebook_statuses(student, name, path, log)
    if student.tampering and not student.affected:
        student.result["status"] = "tampered"
    _read_grades(student)
    if os.path.isdir(student.dirs["autograded"]) and outcome["success"]:
        _feedback(student, api)
    return student.result


def _throwaway_course(payload: dict, tmp: str) -> _Student:
    """A course in ``tmp`` with the instructor's configuration, the template gradebook,
    the assignment's source and the student's submission; nothing else."""
    import nbformat
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    assignment, student = payload["assignment"], payload["student"]
    course = os.path.join(tmp, "course")
    os.makedirs(course)
    with open(os.path.join(course, "nbgrader_config.py"), "w") as fh:
        fh.write(payload["config_text"])
    config = PyFileConfigLoader("nbgrader_config.py", path=course).load_config() if payload["config_text"] else Config()
    db = os.path.join(course, "gradebook.db")
    with open(db, "wb") as fh:
        fh.write(payload["template_db"])
    config.CourseDirectory.root = course
    config.CourseDirectory.db_url = f"sqlite:///{db}"
    coursedir = CourseDirectory(config=config)
    dirs = {"source": coursedir.format_path(coursedir.source_directory, ".", assignment)}
    for kind, folder in (("submitted", coursedir.submitted_directory), ("autograded", coursedir.autograded_directory),
                         ("feedback", coursedir.feedback_directory)):
        dirs[kind] = coursedir.format_path(folder, student, assignment)
    _write_files(dirs["source"], payload["source_files"])
    _write_files(dirs["submitted"], payload["submitted_files"])
    sources = {os.path.basename(p): nbformat.read(p, as_version=4)
               for p in sorted(glob.glob(os.path.join(dirs["source"], "*.ipynb")))}
    import warnings

    from nbformat.warnings import DuplicateCellId

    warnings.filterwarnings("ignore", category=DuplicateCellId)  # renumbered by nbformat, reported by the checks
    result = {"student": student, "assignment": assignment, "status": "ok", "details": [],
              "notebooks": {}, "autograded": {}, "feedback": {}, "timestamp": None}
    return _Student(payload, config, coursedir, dirs, sources, result)


def _scan(student: _Student) -> dict:
    """The static tampering scan of the student-written cells, before anything runs."""
    import nbformat

    tampering = {}
    for name, source in student.sources.items():
        path = os.path.join(student.dirs["submitted"], name)
        if os.path.exists(path):
            found = scan_notebook(nbformat.read(path, as_version=4), source)
            if found:
                tampering[name] = found
    return tampering


def _kernelspec(student: _Student, tmp: str) -> str:
    """Install the confined kernel's kernelspec and point Jupyter at it; the kernel's
    connection folder (in the box's shared folder, when boxed)."""
    box, limits, config = student.box, student.limits, student.config
    zygote = _Zygote.current.path if _Zygote.current and _Zygote.current.boxed == bool(box) else ""
    jupyter_dir, home = os.path.join(tmp, "jupyter"), os.path.join(tmp, "home")
    os.makedirs(home)
    user = box.user if box else limits.get("user", "")
    write_kernelspec(jupyter_dir, memory=int(limits["memory"]), cpu=int(limits["cpu"]), user=user,
                     zygote=zygote, box=box.root if box else "")
    os.environ["JUPYTER_PATH"] = os.pathsep.join([jupyter_dir, os.environ.get("JUPYTER_PATH", "")]).rstrip(os.pathsep)
    if box:  # the kernel's files: a copy in the box; its sockets in a folder the box shares
        runtime = box.student(student.dirs["submitted"])
        config.KernelManager.transport = "ipc"  # the box has no network, not even the grader's loopback
        config.KernelManager.connection_file = os.path.join(runtime, "kernel.json")  # the sockets next to it
        os.environ["JUPYTER_RUNTIME_DIR"] = runtime
        return runtime
    runtime = os.path.join(tmp, "runtime")  # connection files: the kernel must reach its own
    os.makedirs(runtime)
    os.chmod(runtime, 0o711)
    os.environ.update(JUPYTER_RUNTIME_DIR=runtime, **_private_home(home))
    return runtime


def _unboxed_owner(student: _Student, tmp: str) -> tuple[int, int] | None:
    """Without a box, as root with ``--user``: the kernel's home is that user's, and the
    folders on the way to the notebook are traversable, not listable; its (uid, gid)."""
    if student.box or os.geteuid() != 0 or not student.limits.get("user"):
        return None
    import pwd

    account = pwd.getpwnam(student.limits["user"])
    home = os.path.join(tmp, "home")
    os.makedirs(home, exist_ok=True)
    os.chown(home, account.pw_uid, account.pw_gid)
    auto_dir = student.dirs["autograded"]
    for directory in (tmp, os.path.join(tmp, "course"), os.path.dirname(os.path.dirname(auto_dir)),
                      os.path.dirname(auto_dir)):
        os.makedirs(directory, exist_ok=True)
        os.chmod(directory, 0o711)  # traverse, not list
    return account.pw_uid, account.pw_gid


def _autograder(student: _Student, tmp: str):
    """nbgrader's API for the throw-away course, configured with the sandbox's kernel,
    preprocessors and limits."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.apps import NbGraderAPI
    from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, ClearOutput, DeduplicateIds,
                                        IgnorePattern, LimitOutput, OverwriteCells, OverwriteKernelspec,
                                        SaveAutoGrades)

    runtime = _kernelspec(student, tmp)
    owner = _unboxed_owner(student, tmp)
    limits, config = student.limits, student.config
    execute, stderr_is_not_failure, restore_order = _preprocessors()
    config.Execute.timeout = int(limits["cell_timeout"])
    config.Execute.interrupt_on_timeout = True
    config.Execute.shutdown_kernel = "immediate"  # killed when its cells are done: nothing of it is kept
    config.AsyncKernelManager.client_class = "nnh.grade.execute.ReadyClient"  # no idle 0.2 s at its start
    config.Execute.iopub_timeout = max(float(config.Execute.get("iopub_timeout", 4)), 30.0)  # a loaded machine
    config.OverwriteCells.add_missing_cells = True
    config.Autograde.sanitize_preprocessors = [ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCells,
                                               restore_order, CheckCellMetadata]
    config.Autograde.autograde_preprocessors = [execute, stderr_is_not_failure, IgnorePattern,
                                                ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades,
                                                AssignLatePenalties, CheckCellMetadata]
    restore_order.source_order = {os.path.splitext(n)[0]: [c.metadata.get("nbgrader", {}).get("grade_id")
                                                           for c in nb.cells] for n, nb in student.sources.items()}
    api = NbGraderAPI(coursedir=student.coursedir, config=config)
    execute.notebook_timeout = limits.get("notebook_timeout")
    execute.cell_output = limits.get("cell_output")
    execute.notebook_output = limits.get("notebook_output")
    execute.guard = guarded_modules([c.source for nb in student.sources.values() for c in nb.cells
                                     if c.cell_type == "code"])
    execute.sandbox_owner = owner
    execute.judge = bool(limits.get("judge"))
    execute.judge_socket = os.path.join(runtime, "judge.sock")
    execute.judge_modules = notebook_imports(student.sources.values())
    execute.judge_memory = int(limits["memory"])
    execute.box_run = runtime if student.box else None
    return api


def _record_log(student: _Student, outcome: dict, log: str) -> None:
    """Keep the end of nbgrader's log; a failed autograde is the status ``error``."""
    if os.environ.get("NNH_GRADE_LOGS"):  # debugging: keep nbgrader's full log of every student
        with open(os.path.join(os.environ["NNH_GRADE_LOGS"], f"{student.payload['student']}.log"), "w") as fh:
            fh.write(log)
    student.result["log"] = log[-20000:]
    if not outcome["success"]:
        student.result["status"] = "error"
        lines = [line for line in log.splitlines() if line.strip() and not line.startswith((" ", "\t", "Traceback"))
                 and ("Error" in line or "error" in line or "Exception" in line)]
        student.detail("nbgrader autograde failed: " + " | ".join(lines[:6])[-1500:])


def _notebook_statuses(student: _Student, name: str, path: str, log: str) -> None:
    """The status and the feedback lines that the executed notebook ``path`` shows."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    enames = [(c.metadata.get("nbgrader", {}).get("grade_id"), o.get("ename"), o.get("evalue", ""))
              for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    # an OOM kill in the box's cgroup, read once: a loaded machine may report the dead kernel
    # only as the time limit of the cell that was running
    oom_killed = student.box is not None and student.box.killed_for_memory()
    _time_and_memory(student, name, enames, oom_killed)
    _cut_output(student, name, nb)
    _kernel_deaths(student, name, enames, oom_killed)
    for grade_id, _, evalue in enames:
        if "course's reference" in evalue:
            student.detail(f"{name}: {grade_id} scores zero: {evalue}")
    caught = [(g, v) for g, e, v in enames if e == "TamperingDetected" and not v.startswith("not run")]
    caught += [(c.metadata.get("nbgrader", {}).get("grade_id"), o.data["text/plain"][len(TAMPER_NOTE):].strip(" ]"))
               for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "display_data"
               and str(o.get("data", {}).get("text/plain", "")).startswith(TAMPER_NOTE)]
    if caught:
        student.result["status"] = "tampered"
        cost = "the tests are decided by the judge, so this changes no points" if student.limits.get("judge") else \
            "that test and every later one score zero"
        student.detail(f"{name}: {caught[0][1]} (cell {caught[0][0]}); {cost}")
    if GUARD_UNAVAILABLE in log:
        student.detail(f"{name}: {GUARD_UNAVAILABLE}")
    if name in student.tampering:
        _scanned_tampering(student, name, nb)


def _time_and_memory(student: _Student, name: str, enames: list[tuple], oom_killed: bool) -> None:
    limits = student.limits
    if oom_killed:
        return  # reported as such by _kernel_deaths, whatever error the cell shows
    if any(e in CELL_TIMEOUTS for _, e, _ in enames):
        student.result["status"] = "timeout"
        student.detail(f"{name}: a cell ran longer than its time limit ({int(limits['cell_timeout'])} s per-cell "
                       f"limit, {limits.get('notebook_timeout') or 0:.0f} s for the notebook) and was interrupted")
    if any(e == "NotebookTimeoutError" for _, e, _ in enames):
        student.result["status"] = "timeout"
        where = [g for g, e, _ in enames if e == "NotebookTimeoutError"][0]
        student.detail(f"{name}: the notebook ran longer than its {limits['notebook_timeout']:.0f} s "
                       f"time limit; the cells from {where} on were not run")
    if any(e == "MemoryError" for _, e, _ in enames):
        student.result["status"] = "memory"
        student.detail(f"{name}: a cell ran out of memory (limit {limits['memory']} MB)")


def _cut_output(student: _Student, name: str, nb) -> None:
    limits = student.limits
    cut = [c.metadata.get("nbgrader", {}).get("grade_id") or f"#{i + 1}" for i, c in enumerate(nb.cells)
           if c.cell_type == "code" and any(OUTPUT_NOTE in str(o.get("data", {}).get("text/plain", ""))
                                            for o in c.outputs if o.output_type == "display_data")]
    if cut:
        student.detail(f"{name}: the output of {len(cut)} cell(s) ({', '.join(cut[:5])}) passed the "
                       f"output limit ({limits.get('notebook_output', 0) / 2**20:g} MB for the notebook, "
                       f"{limits.get('cell_output', 0) / 2**20:g} MB for a cell) and was cut")


def _kernel_deaths(student: _Student, name: str, enames: list[tuple], oom_killed: bool) -> None:
    """A kernel that died, or that the box's cgroup killed for memory (``oom_killed``)."""
    died = [g for g, e, v in enames if e == "KernelDied" and not v.startswith("not run")]
    if oom_killed:
        stopped = died or [g for g, e, _ in enames if e in CELL_TIMEOUTS | {"NotebookTimeoutError"}]
        where = f"in cell {stopped[0]}" if stopped else "while it ran"
        student.result["status"] = "memory"
        student.detail(f"{name}: the kernel was killed {where} for using more than {student.limits['memory']} MB "
                       "of resident memory; the cells after it were not run")
        return
    if not died:
        return
    if student.result["status"] != "memory":
        student.result["status"] = "kernel_died"
    student.detail(f"{name}: the kernel died in cell {died[0]}; the cells after it were not run")


def _scanned_tampering(student: _Student, name: str, nb) -> None:
    """The static scan found tampering in ``name``: every graded cell that runs after the
    first tampering cell scores zero (under the judge: none)."""
    found = student.tampering[name]
    student.affected[name] = set() if student.limits.get("judge") else _cells_after(student, name, nb, found)
    student.result["status"] = "tampered"
    for grade_id, _, reasons in found:
        for reason in reasons:
            student.detail(f"{name}: tampering in cell {grade_id or 'added by the student'}: {reason}")
    if student.affected[name]:
        student.detail(f"{name}: the tests after that cell score zero: {', '.join(sorted(student.affected[name]))}")
    else:
        student.detail(f"{name}: the judge decides every test after that cell, so this changes no points")


def _cells_after(student: _Student, name: str, nb, found: list) -> set[str]:
    """The graded cells of ``nb`` from the first cell where the scan ``found`` tampering on
    (without the judge they score zero; under it, which decides every test cell, none)."""
    import nbformat

    first = min(index for _, index, _ in found)
    submitted = nbformat.read(os.path.join(student.dirs["submitted"], name), as_version=4)
    first_id = submitted.cells[first].metadata.get("nbgrader", {}).get("grade_id")
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
    start = ids.index(first_id) if first_id in ids else 0
    return {g for g, c in zip(ids[start:], nb.cells[start:]) if c.metadata.get("nbgrader", {}).get("grade")}


def _read_grades(student: _Student) -> None:
    """The grades nbgrader recorded (the tests after scanned tampering set to zero),
    copied into the result."""
    from nbgrader.api import Gradebook

    assignment, name = student.payload["assignment"], student.payload["student"]
    with Gradebook(student.coursedir.db_url, student.coursedir.course_id) as gb:
        try:
            submission = gb.find_submission(assignment, name)
        except Exception:  # noqa: BLE001 - nothing was recorded
            return
        for notebook in submission.notebooks:
            zero = student.affected.get(notebook.name + ".ipynb", set())
            for grade in notebook.grades:
                if grade.name in zero:
                    grade.auto_score = 0.0
                    grade.needs_manual_grade = grade.manual_score is not None
            gb.db.commit()
        student.result["timestamp"] = submission.timestamp.isoformat() if submission.timestamp else None
        for notebook in submission.notebooks:
            student.result["notebooks"][notebook.name] = {
                "grades": {g.name: {"auto_score": g.auto_score, "needs_manual_grade": g.needs_manual_grade}
                           for g in notebook.grades},
                "comments": {c.name: c.auto_comment for c in notebook.comments},
                "late_submission_penalty": notebook.late_submission_penalty,
            }


def _feedback(student: _Student, api) -> None:
    """nbgrader's feedback (hidden tests hidden when asked; none for a task that asks for
    none, the preflight), and the autograded files nbgrader wrote (not what the kernel
    wrote) into the result."""
    payload, auto_dir, result = student.payload, student.dirs["autograded"], student.result
    if payload["feedback"]:
        originals = hide_hidden_tests(auto_dir) if payload.get("hide_tests") else {}
        try:
            feedback = api.generate_feedback(payload["assignment"], payload["student"], force=True)
        finally:
            put_back(originals)
        if not feedback["success"]:
            student.detail("nbgrader generate_feedback failed: " + (feedback.get("error") or "")[-500:])
    keep = set(payload["source_files"]) | set(payload["submitted_files"]) | set(student.sources) | {"timestamp.txt"}
    result["autograded"] = {k: v for k, v in _files(auto_dir).items() if k in keep}
    if os.path.isdir(student.dirs["feedback"]):
        result["feedback"] = _files(student.dirs["feedback"])


def _setup_process() -> None:
    """What every grading process sets once: quiet libraries, private files."""
    import warnings

    warnings.filterwarnings("ignore", module="sqlalchemy")
    warnings.filterwarnings("ignore", message=".*not in session.*")
    os.umask(0o077)  # nothing the grader writes is readable by the sandbox user


def _grade_file(payload_path: str, result_path: str) -> None:
    """Grade the pickled task ``payload_path`` in a fresh temporary folder and
    pickle the result to ``result_path`` (written atomically, last)."""
    import tempfile

    with open(payload_path, "rb") as fh:
        payload = pickle.load(fh)
    tmp = tempfile.mkdtemp(prefix="nnh-grade-")
    try:
        result = work(payload, tmp)
    except Exception:  # noqa: BLE001 - reported as the student's status "error"
        result = {"student": payload["student"], "assignment": payload["assignment"], "status": "error",
                  "details": ["the grader failed: " + traceback.format_exc()[-1500:]], "notebooks": {},
                  "autograded": {}, "feedback": {}, "timestamp": None}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with open(result_path + ".part", "wb") as fh:
        pickle.dump(result, fh)
    os.replace(result_path + ".part", result_path)


def _worker(payload_path: str, result_path: str) -> int:
    """``worker PAYLOAD RESULT``: grade one student in this (fresh) process."""
    _setup_process()
    _Box.ensure()
    _grade_file(payload_path, result_path)
    return 0
