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

from nnh.grade.box import _Box, write_kernelspec
from nnh.grade.confine import _private_home
from nnh.grade.execute import OUTPUT_NOTE, _preprocessors
from nnh.grade.feedback import hide_hidden_tests
from nnh.grade.guard import GUARD_UNAVAILABLE, guarded_modules
from nnh.grade.scan import scan_notebook
from nnh.grade.submission import _check_notebooks, _files, _repair_duplicates, _write_files
from nnh.grade.zygote import _Zygote


def work(payload: dict, tmp: str) -> dict:
    """Autograde one student in ``tmp`` (a fresh directory); see the module docstring."""
    import nbformat
    from nbgrader.api import Gradebook
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, ClearOutput, DeduplicateIds,
                                        IgnorePattern, LimitOutput, OverwriteCells, OverwriteKernelspec,
                                        SaveAutoGrades)
    from nbconvert.preprocessors import ClearMetadataPreprocessor
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
    source_dir = coursedir.format_path(coursedir.source_directory, ".", assignment)
    sub_dir = coursedir.format_path(coursedir.submitted_directory, student, assignment)
    auto_dir = coursedir.format_path(coursedir.autograded_directory, student, assignment)
    feedback_dir = coursedir.format_path(coursedir.feedback_directory, student, assignment)
    _write_files(source_dir, payload["source_files"])
    _write_files(sub_dir, payload["submitted_files"])

    sources = {os.path.basename(p): nbformat.read(p, as_version=4)
               for p in sorted(glob.glob(os.path.join(source_dir, "*.ipynb")))}
    source_ids = {name: {c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells} - {None}
                  for name, nb in sources.items()}
    import warnings

    from nbformat.warnings import DuplicateCellId

    warnings.filterwarnings("ignore", category=DuplicateCellId)  # renumbered by nbformat, reported below
    details, fatal = _check_notebooks(sub_dir, sorted(sources), source_ids)
    result = {"student": student, "assignment": assignment, "status": "ok", "details": details,
              "notebooks": {}, "autograded": {}, "feedback": {}, "timestamp": None}
    if fatal:
        result.update(status="error", details=details + [fatal])
        return result
    result["details"] += _repair_duplicates(sub_dir, sorted(sources))

    # tampering: scan the student-written cells before anything runs
    tampering = {}
    for name, source in sources.items():
        path = os.path.join(sub_dir, name)
        if os.path.exists(path):
            found = scan_notebook(nbformat.read(path, as_version=4), source)
            if found:
                tampering[name] = found

    # confine the kernel
    limits = payload["limits"]
    box = _Box.current if limits.get("sandbox") == "bwrap" else None
    if limits.get("sandbox") == "bwrap" and box is None:
        result.update(status="error", details=details + [_Box.error or "the sandbox (bubblewrap) is not available"])
        return result
    zygote = _Zygote.current.path if _Zygote.current and _Zygote.current.boxed == bool(box) else ""
    jupyter_dir, home = os.path.join(tmp, "jupyter"), os.path.join(tmp, "home")
    os.makedirs(home)
    user = box.user if box else limits.get("user", "")
    write_kernelspec(jupyter_dir, memory=int(limits["memory"]), cpu=int(limits["cpu"]), user=user,
                     zygote=zygote, box=box.root if box else "")
    os.environ["JUPYTER_PATH"] = os.pathsep.join([jupyter_dir, os.environ.get("JUPYTER_PATH", "")]).rstrip(os.pathsep)
    if box:  # the kernel's files: a copy in the box; its sockets in a folder the box shares
        runtime = box.student(sub_dir)
        config.KernelManager.transport = "ipc"  # the box has no network, not even the grader's loopback
        config.KernelManager.connection_file = os.path.join(runtime, "kernel.json")  # the sockets next to it
        os.environ["JUPYTER_RUNTIME_DIR"] = runtime
    else:
        runtime = os.path.join(tmp, "runtime")  # connection files: the kernel must reach its own
        os.makedirs(runtime)
        os.chmod(runtime, 0o711)
        os.environ.update(JUPYTER_RUNTIME_DIR=runtime, **_private_home(home))

    if not box and os.geteuid() == 0 and limits.get("user"):
        import pwd

        account = pwd.getpwnam(limits["user"])
        os.makedirs(home, exist_ok=True)
        os.chown(home, account.pw_uid, account.pw_gid)
        for directory in (tmp, course, os.path.dirname(os.path.dirname(auto_dir)),
                          os.path.dirname(auto_dir)):
            os.makedirs(directory, exist_ok=True)
            os.chmod(directory, 0o711)  # traverse, not list
    SandboxExecute, StderrIsNotFailure, RestoreOrder = _preprocessors()
    cell_timeout = int(limits["cell_timeout"])
    config.Execute.timeout = cell_timeout
    config.Execute.interrupt_on_timeout = True
    config.Execute.iopub_timeout = max(float(config.Execute.get("iopub_timeout", 4)), 30.0)  # a loaded machine
    config.OverwriteCells.add_missing_cells = True
    config.Autograde.sanitize_preprocessors = [ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCells,
                                               RestoreOrder, CheckCellMetadata]
    config.Autograde.autograde_preprocessors = [SandboxExecute, StderrIsNotFailure, IgnorePattern,
                                                ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades,
                                                AssignLatePenalties, CheckCellMetadata]
    RestoreOrder.source_order = {os.path.splitext(n)[0]: [c.metadata.get("nbgrader", {}).get("grade_id")
                                                          for c in nb.cells] for n, nb in sources.items()}
    api = NbGraderAPI(coursedir=coursedir, config=config)
    SandboxExecute.notebook_timeout = limits.get("notebook_timeout")
    SandboxExecute.cell_output = limits.get("cell_output")
    SandboxExecute.notebook_output = limits.get("notebook_output")
    SandboxExecute.guard = guarded_modules([c.source for nb in sources.values() for c in nb.cells
                                            if c.cell_type == "code"])
    if not box and os.geteuid() == 0 and limits.get("user"):
        SandboxExecute.sandbox_owner = (account.pw_uid, account.pw_gid)
    SandboxExecute.box_run = runtime if box else None
    outcome = api.autograde(assignment, student, force=True, create=True)
    log = (outcome.get("log") or "") + (outcome.get("error") or "")
    if os.environ.get("NNH_GRADE_LOGS"):  # debugging: keep nbgrader's full log of every student
        with open(os.path.join(os.environ["NNH_GRADE_LOGS"], f"{student}.log"), "w") as fh:
            fh.write(log)
    result["log"] = log[-20000:]
    if not outcome["success"]:
        result["status"] = "error"
        lines = [line for line in log.splitlines() if line.strip() and not line.startswith((" ", "\t", "Traceback"))
                 and ("Error" in line or "error" in line or "Exception" in line)]
        result["details"].append("nbgrader autograde failed: " + " | ".join(lines[:6])[-1500:])

    # statuses from the executed notebooks
    affected: dict[str, set] = {}
    for name in sources:
        path = os.path.join(auto_dir, name)
        if not os.path.exists(path):
            continue
        nb = nbformat.read(path, as_version=4)
        enames = [(c.metadata.get("nbgrader", {}).get("grade_id"), o.get("ename"), o.get("evalue", ""))
                  for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        if any(e in {"CellTimeoutError", "TimeoutError"} or (e == "KeyboardInterrupt") for _, e, _ in enames):
            result["status"] = "timeout"
            result["details"].append(f"{name}: a cell ran longer than its time limit ({cell_timeout} s per-cell limit, "
                                     f"{limits.get('notebook_timeout') or 0:.0f} s for the notebook) and was interrupted")
        if any(e == "NotebookTimeoutError" for _, e, _ in enames):
            result["status"] = "timeout"
            where = [g for g, e, _ in enames if e == "NotebookTimeoutError"][0]
            result["details"].append(f"{name}: the notebook ran longer than its {limits['notebook_timeout']:.0f} s "
                                     f"time limit; the cells from {where} on were not run")
        if any(e == "MemoryError" for _, e, _ in enames):
            result["status"] = "memory"
            result["details"].append(f"{name}: a cell ran out of memory (limit {limits['memory']} MB)")
        cut = [c.metadata.get("nbgrader", {}).get("grade_id") or f"#{i + 1}" for i, c in enumerate(nb.cells)
               if c.cell_type == "code" and any(OUTPUT_NOTE in str(o.get("data", {}).get("text/plain", ""))
                                                for o in c.outputs if o.output_type == "display_data")]
        if cut:
            result["details"].append(f"{name}: the output of {len(cut)} cell(s) ({', '.join(cut[:5])}) passed the "
                                     f"output limit ({limits.get('notebook_output', 0) / 2**20:g} MB for the notebook, "
                                     f"{limits.get('cell_output', 0) / 2**20:g} MB for a cell) and was cut")
        died = [v for _, e, v in enames if e == "KernelDied" and not v.startswith("not run")]
        if died:
            where = [g for g, e, v in enames if e == "KernelDied" and not v.startswith("not run")]
            if box is not None and box.killed_for_memory():
                result["status"] = "memory"
                result["details"].append(f"{name}: the kernel was killed in cell {where[0]} for using more than "
                                         f"{limits['memory']} MB of resident memory; the cells after it were not run")
            else:
                if result["status"] != "memory":
                    result["status"] = "kernel_died"
                result["details"].append(f"{name}: the kernel died in cell {where[0]}; the cells after it were not run")
        for grade_id, ename, evalue in enames:
            if "course's reference" in evalue:
                result["details"].append(f"{name}: {grade_id} scores zero: {evalue}")
        caught = [(g, v) for g, e, v in enames if e == "TamperingDetected" and not v.startswith("not run")]
        if caught:
            result["status"] = "tampered"
            result["details"].append(f"{name}: {caught[0][1]} (cell {caught[0][0]}); that test and every later "
                                     "one score zero")
        if GUARD_UNAVAILABLE in log:
            result["details"].append(f"{name}: {GUARD_UNAVAILABLE}")
        if name in tampering:
            first = min(index for _, index, _ in tampering[name])
            submitted = nbformat.read(os.path.join(sub_dir, name), as_version=4)
            first_id = submitted.cells[first].metadata.get("nbgrader", {}).get("grade_id")
            ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
            # every graded cell that runs after the first tampering cell is affected
            start = ids.index(first_id) if first_id in ids else 0
            affected[name] = {g for g, c in zip(ids[start:], nb.cells[start:])
                              if c.metadata.get("nbgrader", {}).get("grade")}
            result["status"] = "tampered"
            for grade_id, _, reasons in tampering[name]:
                for reason in reasons:
                    where = grade_id or "added by the student"
                    result["details"].append(f"{name}: tampering in cell {where}: {reason}")
            zeroed = ", ".join(sorted(affected[name]))
            result["details"].append(f"{name}: the tests after that cell score zero: {zeroed}")
    if tampering and not affected:
        result["status"] = "tampered"

    with Gradebook(coursedir.db_url, coursedir.course_id) as gb:
        try:
            submission = gb.find_submission(assignment, student)
        except Exception:  # noqa: BLE001 - nothing was recorded
            submission = None
        if submission is not None:
            for notebook in submission.notebooks:
                zero = affected.get(notebook.name + ".ipynb", set())
                for grade in notebook.grades:
                    if grade.name in zero:
                        grade.auto_score = 0.0
                        grade.needs_manual_grade = grade.manual_score is not None
                gb.db.commit()
            result["timestamp"] = submission.timestamp.isoformat() if submission.timestamp else None
            for notebook in submission.notebooks:
                result["notebooks"][notebook.name] = {
                    "grades": {g.name: {"auto_score": g.auto_score, "needs_manual_grade": g.needs_manual_grade}
                               for g in notebook.grades},
                    "comments": {c.name: c.auto_comment for c in notebook.comments},
                    "late_submission_penalty": notebook.late_submission_penalty,
                }
    if os.path.isdir(auto_dir) and outcome["success"]:
        originals = hide_hidden_tests(auto_dir) if payload.get("hide_tests") else {}
        try:
            feedback = api.generate_feedback(assignment, student, force=True)
        finally:
            for path, blob in originals.items():  # the course's autograded/ keeps everything
                with open(path, "wb") as fh:
                    fh.write(blob)
        if not feedback["success"]:
            result["details"].append("nbgrader generate_feedback failed: " + (feedback.get("error") or "")[-500:])
        # what nbgrader put there (source and submitted files), not what the kernel wrote
        keep = set(payload["source_files"]) | set(payload["submitted_files"]) | set(sources) | {"timestamp.txt"}
        result["autograded"] = {k: v for k, v in _files(auto_dir).items() if k in keep}
        if os.path.isdir(feedback_dir):
            result["feedback"] = _files(feedback_dir)
    return result


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
