"""One student's task, as a grading process receives it: the course configuration,
the assignment's source, the student's files, the template gradebook and the
limits; and the checks, made once per run, that the sandbox and its user can work.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile

from nnh.grade.course import Course, _files, digest
from nnh.grade.settings import CELL_OUTPUT_MB, DEFAULT_MAX_OUTPUT


def grading_limits(course: Course, timeout: float, memory: int, user: str,
                   max_output: float = DEFAULT_MAX_OUTPUT, sandbox: str = "bwrap", judge: bool = True,
                   withhold: tuple[str, ...] = ()) -> dict:
    """The per-student limits: the course's per-cell limit (nbgrader's
    ``Execute.timeout``, at most ``timeout``), the notebook's, memory, CPU, and the bytes
    of output kept for the notebook (``max_output`` MB) and for one cell (at most
    :data:`CELL_OUTPUT_MB` of it); ``judge``: test cells are decided by the judge
    (:mod:`nnh.grade.judge`), not in the student's kernel; ``withhold``: the names whose
    references the box withholds (:mod:`nnh.grade.withhold`)."""
    cell_timeout = course.coursedir.config.Execute.get("timeout", 30) or timeout
    notebook_output = int(max_output * 2**20)
    return {"memory": memory, "cell_timeout": int(max(1, min(cell_timeout, timeout))),
            "notebook_timeout": float(timeout), "cpu": int(timeout * (os.cpu_count() or 1) + 60), "user": user,
            "sandbox": sandbox, "judge": bool(judge), "withhold": list(withhold),
            "notebook_output": notebook_output, "cell_output": min(int(CELL_OUTPUT_MB * 2**20), notebook_output)}


def make_payload(course: Course, assignment: str, student: str, source_files: dict, template: bytes,
                 limits: dict, *, hide_tests: bool = True, feedback: bool = True) -> dict:
    """Everything grading ``student`` needs, with no access to the course (see :func:`run_task`).
    ``hide_tests``: the feedback shows the hidden tests' results and messages, not their code;
    ``feedback``: write feedback at all."""
    submitted = _files(course.path("submitted", student, assignment))
    return task_payload(course, assignment, student, source_files, submitted, template, limits,
                        digest(source_files, submitted, course.config_text), hide_tests=hide_tests,
                        feedback=feedback)


def task_payload(course: Course, assignment: str, student: str, source_files: dict, submitted: dict,
                 template: bytes, limits: dict, key: str, *, hide_tests: bool = True, feedback: bool = True) -> dict:
    """The task :func:`run_task` grades: ``submitted`` (name → bytes) as ``student``'s files."""
    return {"assignment": assignment, "student": student, "config_text": course.config_text,
            "source_files": source_files, "submitted_files": submitted, "template_db": template,
            "limits": limits, "hide_tests": hide_tests, "feedback": feedback, "digest": key}


def hide_tests_setting(course: Course, flag: bool | None) -> bool:
    """``--hide-tests``/``--show-hidden-tests`` if given, else the course's
    ``c.NnhGrade.hide_tests`` (``nbgrader_config.py``), else True."""
    if flag is not None:
        return flag
    section = course.coursedir.config.get("NnhGrade", {})
    return bool(section.get("hide_tests", True))


def judge_setting(course: Course, flag: bool | None) -> bool:
    """``--judge``/``--no-judge`` if given, else the course's ``c.NnhGrade.judge``
    (``nbgrader_config.py``), else True."""
    if flag is not None:
        return flag
    section = course.coursedir.config.get("NnhGrade", {})
    return bool(section.get("judge", True))


@functools.lru_cache(maxsize=None)
def sandbox_problem() -> str:
    """Why the bubblewrap sandbox cannot run on this machine ('' if it can): a box
    made exactly as a kernel's is, importing what a kernel imports."""
    if shutil.which("bwrap") is None:
        return ("the sandbox needs bubblewrap, which is not installed (Debian: apt-get install bubblewrap); "
                "or grade with --sandbox limits (resource limits only, see the page Grading a class)")
    from nnh.grade.box import _run_quietly, box_command  # light: no TensorFlow

    with tempfile.TemporaryDirectory(prefix="nnh-box-check-") as shared:
        os.chmod(shared, 0o711)
        problem = _run_quietly([*box_command(shared), "--", sys.executable, "-c", "import ipykernel, nnh"])
    if problem:
        return (f"the sandbox (bubblewrap) does not work here: {problem.strip()} -- when not run as root it needs "
                "user namespaces; or grade with --sandbox limits (see the page Grading a class)")
    return ""


def unusable_user_error(user: str) -> str:
    """The error of ``--sandbox limits`` as root when ``user`` cannot run this Python."""
    return (f"--sandbox limits: the user {user!r} cannot run {sys.executable} (is it in a private folder, such as "
            "pyenv's under /root?): install the course's Python where others can run it, or use the default "
            "sandbox (--sandbox bwrap), which needs no such user")


@functools.lru_cache(maxsize=None)
def sandbox_user_usable(user: str) -> bool:
    """Can ``user`` run this Python and import the kernel's packages?  (Not when the
    interpreter lives in a private folder, e.g. pyenv under ``/root``.)"""
    if not user or os.geteuid() != 0:
        return False
    try:
        import pwd

        account = pwd.getpwnam(user)
        check = subprocess.run([sys.executable, "-c", "import ipykernel, nnh"], user=account.pw_uid,
                               group=account.pw_gid, extra_groups=[], cwd="/", capture_output=True, timeout=120,
                               env={"PATH": os.environ.get("PATH", ""), "HOME": "/"})
        return check.returncode == 0
    except (KeyError, OSError, subprocess.SubprocessError):
        return False
